"""The host: the control plane's HTTP API, its services and the local daemon."""
