"""``stockmon serve`` (DESIGN §8): the internal API, the fan-out bus and the dashboard.

Above the broker registry: it runs the reference ingest the way ``stockmon stream`` does, with its
own sink; nothing else in stockmon.reference imports it.
"""
