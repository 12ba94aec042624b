"""Setitec logs and JSON trace messages -> Trace.

Public interface (other rooms use only these names):

- parse_bytes(data, source) -> Trace: sniff the content (Setitec text or a JSON message
  pair/single message) and parse it; raises IngestError and nothing else.
- parse_file(path) -> Trace
- iter_inputs(paths) -> Iterator[InputResult]: walk files/folders as `appliance ingest`
  does (recursive, .xls/.json any case; JSON companions grouped per folder).

Implemented in setitec.py (text logs), mqtt.py (JSON messages), discover.py (walking).
Writers for fixtures: setitec_writer.write_setitec, json_writer.write_json_messages.
"""
