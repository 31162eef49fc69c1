//! Real SMTP clients against the whole gateway (not a test backend): lettre's transport and
//! swaks each deliver a fax message; the gateway must accept it and fax it.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lettre_transport_delivers_a_fax() {
    use lettre::message::{header::ContentType, Attachment, MultiPart, SinglePart};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let work = Workdir::new();
    let gw = start(&work, |t| t).await;
    let msg = Message::builder()
        .from("sender@client.example".parse().unwrap())
        .to("FAX=+12025550100@gw.example.test".parse().unwrap())
        .subject("fax by lettre")
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain("see attachment".to_string()))
                .singlepart(Attachment::new("fax.tif".into()).body(
                    fixture("fax-3page-g3.tif"),
                    ContentType::parse("image/tiff").unwrap(),
                )),
        )
        .unwrap();
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(gw.local_addr.port())
        .build();
    let resp = transport.send(msg).await.unwrap();
    assert_eq!(resp.code().to_string(), "250");
    let ev = work
        .wait_for(20, "fax_delivered", |e| e.event == "fax_delivered")
        .await;
    assert_eq!(ev.details.get("pages").and_then(|v| v.as_u64()), Some(3));
    gw.shutdown().await;
    assert_eq!(work.outbox_tiffs().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_delivers_a_fax_and_is_refused_as_a_relay() {
    if !have_tool("swaks") {
        return;
    }
    let work = Workdir::new();
    let gw = start(&work, |t| t).await;
    let server = format!("127.0.0.1:{}", gw.local_addr.port());
    let tif = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fax-3page-g3.tif");
    let (s, tif) = (server.clone(), tif.display().to_string());
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        run(
            "swaks",
            &[
                "--server",
                &s,
                "--from",
                "sender@client.example",
                "--to",
                "FAX=+12025550100@gw.example.test",
                "--attach-type",
                "image/tiff",
                "--attach",
                &tif,
                "--timeout",
                "20",
            ],
        )
    })
    .await
    .unwrap();
    assert!(ok, "swaks failed:\n{out}\n{err}");
    assert!(out.contains("<-  250 2.0.0"), "{out}");
    work.wait_for(20, "fax_delivered", |e| e.event == "fax_delivered")
        .await;
    let (ok, out, _) = tokio::task::spawn_blocking(move || {
        run(
            "swaks",
            &[
                "--server",
                &server,
                "--from",
                "a@client.example",
                "--to",
                "victim@other.example",
                "--timeout",
                "20",
            ],
        )
    })
    .await
    .unwrap();
    assert!(!ok, "a relay attempt must fail");
    assert!(out.contains("<** 550 5.7.1"), "{out}");
    gw.shutdown().await;
}
