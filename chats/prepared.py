"""
Hot reads compiled to SQL once, then re-run with new values.

Building a queryset (cloning, resolving lookups and joins) and compiling it to SQL cost more
CPU than the database spends answering the inbox or a timeline page: about half of such a
request. The statements themselves never change shape, only their values: whose inbox, which
conversation, which ids. A PreparedRead builds its queryset once per database connection and
shape, with a random stand-in for each value, compiles it, and remembers where each stand-in
landed among the statement's parameters and how the ORM converts the columns it returns. Each
later call substitutes the real values (prepared for the database by the same model field)
and converts the rows exactly as `.values()` or `.values_list()` would: same rows, same query
count, a fraction of the CPU.

Values that change the SQL text itself (LIMIT, OFFSET, ORDER BY, how many ids an IN lists)
are part of the shape: each shape is compiled once per connection (at most MAX_SHAPES kept).

`uuids_as_text=True` reads UUID columns as their canonical text (`str(uuid)`) instead of
`uuid.UUID` objects, for rows that are only rendered: the databases send them as text (MariaDB's
UUID type, or 32 hex digits), and making an object of each to print it again cost a sixth of the
inbox's CPU. MariaDB's text is already canonical, so there no converter runs at all.
"""
import json
import uuid
from collections import OrderedDict

import orjson
from django.db import connections, router
from django.db.models import Field, JSONField, QuerySet
from django.db.models.expressions import Col

MAX_SHAPES = 64


def attnames(model) -> tuple[str, ...]:
    """The columns a model instance is made from, in Model.from_db's order."""
    return tuple(field.attname for field in model._meta.concrete_fields)


class PreparedRead:
    """
    `PreparedRead(build, model=M, values={"user": User._meta.pk})` where
    `build(**values, **shape) -> QuerySet` returns a `.values(...)` or `.values_list(...)`
    queryset. `read(values={...}, shape={...})` returns its rows as a list (dicts or tuples).
    Every value is a UUID primary key (or a list of them: its length is part of the shape).
    """

    def __init__(self, build, *, model, values: dict[str, Field], uuids_as_text: bool = False):
        self.build = build
        self.model = model
        self.fields = values
        self.uuids_as_text = uuids_as_text
        self.key = f"_prepared_{id(self)}"

    def read(self, *, values: dict, shape: dict | None = None, for_write: bool = False) -> list:
        """The rows; `for_write` reads from the database writes go to (locking reads)."""
        shape = shape or {}
        alias = self._alias(for_write)
        connection = connections[alias]
        lengths = tuple(len(v) if isinstance(v, (list, tuple)) else None for v in values.values())
        shape_key = (tuple(sorted(shape.items())), lengths)
        # Kept on the connection object: one per thread, so each pool thread compiles its own.
        cache = connection.__dict__.setdefault(self.key, OrderedDict())
        compiled = cache.get(shape_key)
        if compiled is None:
            compiled = cache[shape_key] = self._compile(alias, values, shape)
            if len(cache) > MAX_SHAPES:
                cache.popitem(last=False)
        sql, params, slots, compiler, converters, names = compiled
        params = list(params)
        for position, name, index in slots:
            value = values[name] if index is None else values[name][index]
            params[position] = self.fields[name].get_db_prep_value(value, connection)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if converters:
            rows = compiler.apply_converters(rows, converters)
        if names is None:
            return [tuple(row) for row in rows]
        if names == ():  # values_list(flat=True)
            return [row[0] for row in rows]
        return [dict(zip(names, row)) for row in rows]

    def instance(self, *, values: dict, for_write: bool = False):
        """
        The model instance of the first row, made as the ORM makes them (Model.from_db), or None:
        for a statement that selects `attnames(model)` (`.values_list(*attnames(model))`).
        """
        rows = self.read(values=values, for_write=for_write)
        if not rows:
            return None
        return self.model.from_db(self._alias(for_write), attnames(self.model), rows[0])

    def _alias(self, for_write: bool) -> str:
        return (router.db_for_write if for_write else router.db_for_read)(self.model)

    def _compile(self, alias: str, values: dict, shape: dict):
        connection = connections[alias]
        stand_ins, where = {}, {}
        for name, value in values.items():
            if isinstance(value, (list, tuple)):
                stand_ins[name] = [uuid.uuid4() for _ in value]
                for index, stand_in in enumerate(stand_ins[name]):
                    where[self._prep(name, stand_in, connection)] = (name, index)
            else:
                stand_ins[name] = uuid.uuid4()
                where[self._prep(name, stand_ins[name], connection)] = (name, None)
        queryset: QuerySet = self.build(**stand_ins, **shape).using(alias)
        query = queryset.query
        compiler = query.get_compiler(alias)
        sql, params = compiler.as_sql()
        slots = [(position, *where[param]) for position, param in enumerate(params) if _hashable(param) in where]
        missing = set(where.values()) - {(name, index) for _, name, index in slots}
        if missing:
            raise ValueError(f"{self.build!r}: values not found in the compiled statement: {sorted(missing)}")
        fields = [s[0] for s in compiler.select[0:compiler.col_count]]
        converters = compiler.get_converters(fields)
        if self.uuids_as_text:
            canonical = _uuids_arrive_canonical(connection)
            for position, expression in enumerate(fields):
                if expression.output_field.get_internal_type() == "UUIDField":
                    if canonical:
                        converters.pop(position, None)
                    else:
                        converters[position] = ([uuid_text], expression)
            converters = dict(sorted(converters.items()))
        for position, (_functions, expression) in list(converters.items()):
            field = expression.output_field
            if isinstance(expression, Col) and isinstance(field, JSONField) and field.decoder is None:
                converters[position] = ([json_value], expression)
        iterable = queryset._iterable_class.__name__
        if iterable == "ValuesIterable":
            names = tuple(query.selected) if query.selected else (
                *query.extra_select, *query.values_select, *query.annotation_select
            )
        elif iterable == "FlatValuesListIterable":
            names = ()
        elif iterable == "ValuesListIterable":
            names = None
        else:
            raise TypeError("PreparedRead needs a .values() or .values_list() queryset")
        return sql, tuple(params), slots, compiler, converters, names

    def _prep(self, name: str, value, connection):
        return _hashable(self.fields[name].get_db_prep_value(value, connection))


def _uuids_arrive_canonical(connection) -> bool:
    """MariaDB 10.7+ stores UUIDField in its UUID type and sends it as canonical lowercase text."""
    return connection.vendor == "mysql" and connection.data_types["UUIDField"] == "uuid"


def uuid_text(value, expression, connection) -> str | None:
    """A UUID column's value as `str(uuid.UUID(...))` would print it: 32 hex digits, or a UUID object."""
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) == 36:  # MariaDB 10.7+'s UUID type: the canonical form already
            return value.lower()
        if len(value) == 32:  # char(32): MySQL, older MariaDB, SQLite
            return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}".lower()
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(value))


def json_value(value, expression, connection):
    """
    JSONField.from_db_value for a whole column (no decoder, no key transform), with orjson: the
    same values (anything orjson refuses, e.g. NaN or integers past 64 bits, goes to `json`), at a
    fifth of the CPU; an inbox page decodes two per row.
    """
    if value is None or not isinstance(value, (str, bytes)):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value


def _hashable(value):
    try:
        hash(value)
    except TypeError:
        return None
    return value


class PreparedPages:
    """
    A PreparedRead whose shape is `offset` and `limit`, sliceable (`[offset:offset + size]`)
    like the queryset a paginator takes.
    """

    ordered = True  # for Django's Paginator

    def __init__(self, read: PreparedRead, **values):
        self.prepared = read
        self.values = values

    def __getitem__(self, page: slice) -> list:
        if page.stop <= page.start:
            return []
        return self.prepared.read(values=self.values, shape={"offset": page.start, "limit": page.stop})
