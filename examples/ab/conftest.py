"""`base_checkout/` is the base for `--perf-against`, not a test directory of the head."""

collect_ignore = ["base_checkout"]
