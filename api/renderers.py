"""JSON out, for any text: an answer may quote back what the client sent (an unknown field's
name, a refused choice), and JSON lets a client send a lone surrogate (``"\\ud800"``), which
UTF-8 cannot encode. DRF's renderer fails on one (a 500); this one writes it as the escape it
came in as, which is still valid JSON."""

from __future__ import annotations

from rest_framework import renderers


class JSONRenderer(renderers.JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            # Rare (only a lone surrogate cannot be encoded), so only this answer pays for the
            # second rendering, with every non-ASCII character escaped.
            return _AsciiJSONRenderer().render(data, accepted_media_type, renderer_context)


class _AsciiJSONRenderer(renderers.JSONRenderer):
    ensure_ascii = True
