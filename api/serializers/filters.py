"""The query parameters of the list endpoints."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from api.serializers.fields import METADATA_KEY, CharField
from deliveries.models import Priority, Suppression
from deliveries.states import MessageStatus


class MetadataFilterField(CharField):
    # DRF's way to parse text into a richer value; the stubs fix a CharField's value type to str.
    def to_internal_value(self, data: Any) -> tuple[str, str]:  # type: ignore[override]
        text = super().to_internal_value(data)
        # A CharField's checks (length, NUL, surrogates) are for the text: run after
        # to_internal_value, as DRF runs them, they would see the (key, value) pair.
        super().run_validators(text)
        key, sep, value = text.partition(":")
        if not sep or not METADATA_KEY.match(key):
            raise serializers.ValidationError(
                "Write metadata filters as key:value.", code="invalid_metadata_filter"
            )
        return key, value

    def run_validators(self, value: Any) -> None:
        """Run on the text already, by ``to_internal_value``."""


class ChoicesField(serializers.ListField):
    """A repeated query parameter whose values may also be comma-separated: `a,b` or `a&b`."""

    def to_internal_value(self, data: Any) -> list[Any]:
        if isinstance(data, list) and all(isinstance(item, str) for item in data):
            data = [part for item in data for part in item.split(",") if part]
        return super().to_internal_value(data)


#: ``?mode=``: whose mail a list shows. Test-mode keys' mail and live keys' mail of a client
#: never mix in a list unless asked for: without the parameter, the mode of the requesting key.
MODE_TEST_MODE: dict[str, bool | None] = {"live": False, "test": True, "all": None}


class ModeField(serializers.ChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            choices=list(MODE_TEST_MODE),
            required=False,
            help_text="`live`: mail sent with live keys; `test`: with test-mode keys; `all`: "
            "both. Without it, the mode of the key making the request.",
            **kwargs,
        )


def test_mode_for(mode: str | None, *, key_test_mode: bool) -> bool | None:
    """The selectors' ``test_mode`` for a ``mode`` parameter (or None: the key's own mode)."""
    return key_test_mode if mode is None else MODE_TEST_MODE[mode]


class MessageFilterSerializer(serializers.Serializer):
    mode = ModeField()
    status = ChoicesField(
        child=serializers.ChoiceField(choices=MessageStatus.choices),
        required=False,
        help_text="Any of these statuses (repeated or comma-separated).",
    )
    priority = ChoicesField(
        child=serializers.ChoiceField(choices=Priority.choices),
        required=False,
        help_text="Any of these priorities (repeated or comma-separated).",
    )
    recipient = serializers.EmailField(
        required=False, help_text="Messages with this recipient (to, cc or bcc), any case."
    )
    tag = serializers.ListField(
        child=CharField(max_length=64),
        required=False,
        help_text="Messages with all of these tags (repeat the parameter).",
    )
    metadata = serializers.ListField(
        child=MetadataFilterField(max_length=600),
        required=False,
        help_text="`key:value`: messages whose metadata has this value (repeat: all of them).",
    )
    created_after = serializers.DateTimeField(
        required=False, help_text="Created at or after this time (ISO 8601)."
    )
    created_before = serializers.DateTimeField(
        required=False, help_text="Created before this time (ISO 8601)."
    )

    def filters(self, *, key_test_mode: bool) -> dict[str, Any]:
        data = self.validated_data
        return {
            "test_mode": test_mode_for(data.get("mode"), key_test_mode=key_test_mode),
            "statuses": data.get("status", []),
            "priorities": data.get("priority", []),
            "recipient": data.get("recipient"),
            "tags": data.get("tag", []),
            "metadata": dict(data.get("metadata", [])),
            "created_after": data.get("created_after"),
            "created_before": data.get("created_before"),
        }


class SuppressionFilterSerializer(serializers.Serializer):
    reason = ChoicesField(
        child=serializers.ChoiceField(choices=Suppression.Reason.choices),
        required=False,
        help_text="Any of these reasons (repeated or comma-separated).",
    )
