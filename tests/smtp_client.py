"""A real SMTP client (Python's smtplib) for tests/smtp_listener.rs.

Usage: python3 smtp_client.py PORT

Sends one message with RFC 3461 DSN parameters to 127.0.0.1:PORT, then tries a recipient
whose ORCPT is not valid xtext. Prints one JSON object on stdout.
"""

import json
import smtplib
import sys

port = int(sys.argv[1])
message = (
    b"From: sender@client.example\r\n"
    b"To: FAX=+15550100@gw.example.test\r\n"
    b"Subject: dsn test\r\n"
    b"\r\n"
    b"first line\r\n"
    b".a line that starts with a dot\r\n"
)
result = {}
with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=10) as smtp:
    refused = smtp.sendmail(
        "sender@client.example",
        ["FAX=+15550100@gw.example.test"],
        message,
        # RFC 3461 xtext: a literal "+" is written "+2B" (section 4).
        mail_options=["RET=HDRS", "ENVID=JOB-1"],
        rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;+2B15550100@gw.example.test"],
    )
    result["refused"] = {k: list(v) for k, v in refused.items()}
    result["esmtp_features"] = sorted(smtp.esmtp_features.keys())
    result["size_limit"] = smtp.esmtp_features.get("size")
    # "+15" is the xtext of the octet 0x15, not the characters "+15".
    code, _ = smtp.mail("sender@client.example")
    result["second_mail"] = code
    code, _ = smtp.rcpt(
        "FAX=+15550100@gw.example.test",
        options=["ORCPT=rfc822;+15550100@gw.example.test"],
    )
    result["raw_plus_orcpt"] = code
    smtp.rset()
result["message"] = message.decode("ascii")
print(json.dumps(result))
