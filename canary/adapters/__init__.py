"""The only modules that import kubernetes, prometheus_api_client or subprocess."""
