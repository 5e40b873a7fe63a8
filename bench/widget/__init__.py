"""Widget delivery benchmark: launcher click -> first bot message in Chromium (bench.widget.cli)."""
