"""What a proxy's replicas share about each client session (`sessionStorage`)."""
