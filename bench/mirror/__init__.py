"""``python -m bench.mirror``: how far the analytics cluster trails a region.

Two local brokers (a region and the analytics cluster) and one dedicated MirrorMaker 2
configured as the regions deployment runs it (:func:`tests.support.mirror.region_flows`:
identity naming, ``read_committed``); a producer appends to the region's ``events`` topic
at a steady rate (500 records/s by default, acks=all, keyed by conversation id over 12
partitions), and consumers on both clusters time each record's arrival. The mirror's lag
of a record is from the region's acknowledgement of its append (it is durable in the
region) to its visibility on the analytics cluster; the region's own produce-to-visible
time is measured alongside as the floor. bench/README.md, ``bench.mirror``.
"""
