"""Download statistics: reading the web server's access logs into daily rollups (``logs ingest``)."""
