"""Rules turn binary facts and a (real or hypothetical) environment into verdicts."""
