"""Lead delivery: every captured lead reaches the site's destinations (docs/delivery.md)."""
