"""The data layer: every SQL statement of the product, as named async functions taking a
connection, grouped by what they store (see docs/design.md, "Where things live")."""
