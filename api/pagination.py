"""Cursor pagination: stable pages while new mail keeps arriving, and no COUNT(*) of a big table.

Messages and suppressions are newest first, on (created_at, id); the position is the creation
time, and rows created in the same instant (a batch) are told apart by the cursor's offset.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination


class CursorPage(CursorPagination):
    page_size = 50
    max_page_size = 200
    page_size_query_param = "limit"
    ordering = ("-created_at", "-id")

    def get_ordering(self, request, queryset, view):
        return getattr(view, "cursor_ordering", self.ordering)

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return super().paginate_queryset(queryset, request, view)
        except (NotFound, DjangoValidationError, ValueError, OverflowError):
            # DRF answers an undecodable cursor with 404; it is a bad parameter of a list that
            # exists. A decodable one with a forged position ("p=abc") fails in the query.
            raise serializers.ValidationError(
                {"cursor": [serializers.ErrorDetail("Invalid cursor.", code="invalid_cursor")]}
            ) from None
