"""The read-only web UI and the HTML reports: pages, charts and graphs drawn as SVG."""
