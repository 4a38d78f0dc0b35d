"""Renderers: one module per output format, each turning a report object into text for a stream."""
