"""Imported once by the fork template (``harness.stack.forked``'s preloads), never by a service itself: it fills the
library caches that every service process would otherwise fill at its start and that depend on nothing of the
service's settings. botocore parses its endpoint data and each service's model and rule set from JSON files (a few MB)
the first time a process makes a client; here the template's default session makes one client of each service the
system uses (no request is sent), and every forked service's ``boto3.client`` reuses the session's parsed data. Its
own settings — endpoint, region, credentials, timeouts — it still passes per client, as before.

A warm-up that fails (an unusable AWS profile in the environment, say) leaves the caches cold, never the template
broken."""

from __future__ import annotations

SERVICES = ("sqs", "s3")


def warm() -> None:
    try:
        import boto3

        boto3.setup_default_session()
        for service in SERVICES:
            boto3.client(
                service,
                region_name="us-east-1",
                endpoint_url="http://127.0.0.1:9",
                aws_access_key_id="template",
                aws_secret_access_key="template",
            )
    except Exception:  # noqa: BLE001 - a cold cache costs CPU, a broken template every service
        pass


warm()
