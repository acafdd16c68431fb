"""The evidence pipeline: scope policy, one-pass pull, batches, keys, clocks, enrolment, firmware."""
