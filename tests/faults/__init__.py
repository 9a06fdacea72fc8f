"""The fault suite (issue 5, "Reliability and security", part 1).

Each test injects one fault, makes the request through a traced session and through an
uninstrumented twin with the same connector settings, and checks that:

* the caller sees exactly the same outcome (the same exception class, or the same status and
  body);
* every span that started ended exactly once (the ``telemetry`` ledger), in the expected tree,
  with the expected status and ``error.type`` on the CLIENT span and on the phase span where
  the fault struck;
* the ambient OpenTelemetry context is unchanged (the autouse fixture).

All traffic stays on loopback; names resolve through a fixed loopback map (no DNS query is
ever sent); every request and every server handler is bounded in time.

Faults on the wire (``test_wire_faults``, ``test_timeouts``, ``test_connect_faults``):

1. connection reset (RST) mid-headers (GET, which aiohttp resends once, and POST);
2. connection reset mid-body (Content-Length 10000, 100 bytes sent);
3. a stall past ``sock_connect`` (a listener whose accept queue is full);
4. a stall past ``sock_read`` (before the head, and mid-body);
5. a stall past ``total`` (before the head, and mid-body);
6. a malformed status line (``HTTP/1.1 abc OK``);
7. a malformed header line (no colon);
8. headers with invalid characters (a separator in a name, a NUL in a value);
9. an oversized header (over aiohttp's default ``max_field_size`` of 8190);
10. a truncated chunked body (no terminating zero-size chunk);
11. TLS: a certificate for another name (``other.example``; to ``localhost`` and
    ``127.0.0.1``);
12. TLS: a certificate from an untrusted CA (the client's default context);
13. TLS: a server that closes (FIN, or RST) after reading the ClientHello;
14. a refused port;
15. a name that does not resolve (``nothing.invalid``, EAI_NONAME from the loopback resolver).

Faults in the telemetry pipeline (``test_pipeline_faults``), over 20 requests each, each on a
new connection: the requests succeed, the traces are whole where the fault allows it, and the
fault is logged once:

16. an exporter whose ``export()`` raises (behind a SimpleSpanProcessor, a BatchSpanProcessor);
17. a span processor raising in ``on_start`` (for every span, CLIENT spans, phase spans);
18. a span processor raising in ``on_end`` (likewise);
19. a sync request or response hook that raises;
20. an async request or response hook that hangs (given up after ``HOOK_TIMEOUT_S``);
21. a meter provider whose ``get_meter()`` raises;
22. a meter provider whose instruments raise on every measurement.
"""
