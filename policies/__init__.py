"""The CAT Node policy pack: rules (:mod:`policies.rules`) and an offline runner (:mod:`policies.offline`)."""
