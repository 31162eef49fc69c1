//! Per-client limits: concurrent sessions and new connections per window, keyed by IPv4
//! address or IPv6 /64 (one host usually holds a whole /64). Memory is bounded: at most
//! [`MAX_CLIENTS`] clients are tracked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Clients tracked at once; past it, idle entries are pruned, and if none can be, a new
/// client is refused like one over its limit.
pub(crate) const MAX_CLIENTS: usize = 16 * 1024;

#[derive(Debug)]
struct Client {
    active: usize,
    window_start: Instant,
    connections: usize,
}

/// The shared table of clients.
#[derive(Debug)]
pub(crate) struct ClientLimits {
    max_active: usize,
    max_per_window: usize,
    window: Duration,
    clients: Mutex<HashMap<IpAddr, Client>>,
}

/// A session's hold on its client's count; dropping it ends the session for the count.
#[derive(Debug)]
pub(crate) struct ClientPermit {
    limits: Arc<ClientLimits>,
    key: IpAddr,
}

impl Drop for ClientPermit {
    fn drop(&mut self) {
        let mut clients = self.limits.lock();
        if let Some(client) = clients.get_mut(&self.key) {
            client.active = client.active.saturating_sub(1);
        }
    }
}

/// The key of `ip`: the address itself for IPv4 (and IPv4-mapped IPv6), the /64 for IPv6.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

impl ClientLimits {
    /// Limits of `max_active` concurrent sessions and `max_per_window` new connections per
    /// `window` for each client.
    pub(crate) fn new(max_active: usize, max_per_window: usize, window: Duration) -> Self {
        ClientLimits {
            max_active,
            max_per_window,
            window,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Client>> {
        // A panic while holding the lock cannot leave the counts inconsistent in a way that
        // matters more than refusing service; keep going with the data.
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count a new connection from `ip` at `now`; `None` when it is over a limit.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Option<ClientPermit> {
        let key = key(ip);
        let mut clients = self.lock();
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&key) {
            let window = self.window;
            clients.retain(|_, c| c.active > 0 || now.duration_since(c.window_start) < window);
            if clients.len() >= MAX_CLIENTS {
                return None;
            }
        }
        let client = clients.entry(key).or_insert(Client {
            active: 0,
            window_start: now,
            connections: 0,
        });
        if now.duration_since(client.window_start) >= self.window {
            client.window_start = now;
            client.connections = 0;
        }
        client.connections = client.connections.saturating_add(1);
        if client.connections > self.max_per_window || client.active >= self.max_active {
            return None;
        }
        client.active += 1;
        drop(clients);
        Some(ClientPermit {
            limits: self.clone(),
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_cap_and_rate() {
        let limits = Arc::new(ClientLimits::new(2, 3, Duration::from_secs(60)));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        let a = limits.admit(ip, t0).expect("first");
        let _b = limits.admit(ip, t0).expect("second");
        assert!(limits.admit(ip, t0).is_none(), "third concurrent");
        drop(a);
        // The refused attempt counted: 3 connections in the window, the 4th is over.
        assert!(limits.admit(ip, t0).is_none(), "rate");
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limits.admit(other, t0).is_some());
        let later = t0 + Duration::from_secs(61);
        assert!(limits.admit(ip, later).is_some(), "new window");
    }

    #[test]
    fn ipv6_is_keyed_by_slash_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(key(a), key(b));
        assert_ne!(key(a), key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
