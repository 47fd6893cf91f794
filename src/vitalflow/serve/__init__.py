"""The inference service: synchronous invocations and durable asynchronous jobs over HTTP."""
