"""Filter layers. Each one is small and implements `guardrail.layers.base.Layer`."""
