"""The configurable HTTP sink: settings with presets, sink, and a fake receiver."""
