"""A real TLS/AUTH client (Python's smtplib) for tests/smtp_tls.rs.

Usage: python3 smtp_tls_client.py STARTTLS_PORT IMPLICIT_PORT

Over STARTTLS (RFC 3207): EHLO before and after, AUTH with a wrong and then the right
password (smtplib picks PLAIN, RFC 4616), one message. Over implicit TLS: AUTH LOGIN (smtplib
sends the user name as initial response) and one message. Prints one JSON object on stdout.
The test certificate is self-made, so certificate checks are off (an unverified context).
"""

import json
import smtplib
import ssl
import sys

starttls_port, implicit_port = int(sys.argv[1]), int(sys.argv[2])
context = ssl._create_unverified_context()
result = {}
message = b"Subject: over tls\r\n\r\nsent by smtplib\r\n"

with smtplib.SMTP("127.0.0.1", starttls_port, local_hostname="client.example", timeout=10) as s:
    s.ehlo()
    result["before_tls"] = sorted(s.esmtp_features.keys())
    code, _ = s.starttls(context=context)
    result["starttls_code"] = code
    result["tls_version"] = s.sock.version()
    s.ehlo()
    result["after_tls"] = sorted(s.esmtp_features.keys())
    result["auth_mechanisms"] = s.esmtp_features.get("auth", "").split()
    try:
        s.login("fax", "wrong")
        result["wrong_password"] = 235
    except smtplib.SMTPAuthenticationError as e:
        result["wrong_password"] = e.smtp_code
    code, _ = s.login("fax", "secret")
    result["login"] = code
    result["refused"] = s.sendmail("a@client.example", ["FAX=1@gw.example.test"], message)

with smtplib.SMTP_SSL(
    "127.0.0.1", implicit_port, local_hostname="client.example", timeout=10, context=context
) as s:
    s.ehlo()
    result["implicit_features"] = sorted(s.esmtp_features.keys())
    s.user, s.password = "fax", "secret"
    code, _ = s.auth("LOGIN", s.auth_login)
    result["implicit_login"] = code
    s.sendmail("b@client.example", ["FAX=2@gw.example.test"], message)

print(json.dumps(result))
