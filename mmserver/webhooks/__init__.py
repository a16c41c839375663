"""Webhooks (docs/WEBHOOKS.md): every event of the log POSTed, signed, to one configured URL,
at least once, by whichever replicas are alive. Redis-side state: mmserver/store/deliveries.py."""
