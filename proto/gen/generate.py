#!/usr/bin/env python3
"""Generates spate's Kafka message codecs from proto/schema/*.api.

Usage: generate.py OUTPUT_DIR SCHEMA.api [SCHEMA.api ...]
Writes OUTPUT_DIR/messages.h and OUTPUT_DIR/messages.cc.

The schema format is ours (see any proto/schema/*.api file for an example):

    # A comment.
    api produce key 0 versions 0-9 flexible 9+

    struct shared_name           # optional shared structs, referenced by name
      field: int32

    request
      field: type [versions=R] [nullable=R] [tag=N] [default=V]
      list: []element_struct
        child: string            # children are indented two more spaces

    response
      ...

Types: bool int8 int16 int32 int64 uint16 uint32 float64 string bytes records
uuid, arrays `[]T` of those or of a struct, and struct-valued fields. A struct
type with no indented children refers to a top-level `struct` block.
Version ranges R: `3+`, `0-4`, `5`, `none`.

Member names: a field keeps its schema name, except that a trailing underscore
is appended when the name is a C++ keyword, the name of a schema type that is
also a C++ type (`records`, `uuid`), the name of any struct of the same
message, or the name of a generated member of the message class (`key`,
`version_min`, `encode`, ...). So `records: records` becomes `records_`. The
rule exists because a member may not share its name with a type that the same
class scope uses, and keywords are not identifiers.

A malformed schema stops the build with `file:line: message`.

Only the standard library is used, so the build needs nothing but python3.
"""

import os
import re
import sys

INFINITY = 0x7FFF

PRIMITIVES = {
    # schema type: (C++ type, writer/reader method, minimum encoded size classic, compact)
    "bool": ("bool", "boolean", 1, 1),
    "int8": ("int8_t", "int8", 1, 1),
    "int16": ("int16_t", "int16", 2, 2),
    "int32": ("int32_t", "int32", 4, 4),
    "int64": ("int64_t", "int64", 8, 8),
    "uint16": ("uint16_t", "uint16", 2, 2),
    "uint32": ("uint32_t", "uint32", 4, 4),
    "float64": ("double", "float64", 8, 8),
    "uuid": ("uuid", "uuid_value", 16, 16),
    "string": ("std::string", "string", 2, 1),
    "bytes": ("std::vector<uint8_t>", "bytes", 4, 1),
    "records": ("records", "records", 4, 1),
}
INTEGER_TYPES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
}
CPP_KEYWORDS = set(
    """alignas alignof and and_eq asm auto bitand bitor bool break case catch char
    char8_t char16_t char32_t class compl concept const consteval constexpr constinit
    const_cast continue co_await co_return co_yield decltype default delete do double
    dynamic_cast else enum explicit export extern false float for friend goto if inline
    int long mutable namespace new noexcept not not_eq nullptr operator or or_eq private
    protected public register reinterpret_cast requires return short signed sizeof static
    static_assert static_cast struct switch template this thread_local throw true try
    typedef typeid typename union unsigned using virtual void volatile wchar_t while xor
    xor_eq""".split()
)
CLASS_MEMBERS = {
    "key", "version_min", "version_max", "flexible_min", "is_flexible", "encode",
    "encoded_size", "decode", "fill_sample", "same_at", "write", "read",
}
# Parameters and locals of the generated functions: a member of the same name would be
# shadowed (-Wshadow), so such a field also gets the trailing underscore.
GENERATED_LOCALS = {
    "out", "in", "version", "other", "flexible", "items", "inner", "tagged_count", "tag",
    "size", "body", "sub", "i", "item", "counter",
}
TYPE_NAMES = {"records", "uuid"}
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class SchemaError(Exception):
    pass


class Range:
    """An inclusive version range; empty when low > high."""

    def __init__(self, low, high):
        self.low = low
        self.high = high

    @staticmethod
    def parse(text, where):
        text = text.strip()
        if text == "none":
            return Range(1, 0)
        m = re.fullmatch(r"(\d+)\+", text)
        if m:
            return Range(int(m.group(1)), INFINITY)
        m = re.fullmatch(r"(\d+)-(\d+)", text)
        if m:
            low, high = int(m.group(1)), int(m.group(2))
            if low > high:
                raise SchemaError(f"{where}: empty version range '{text}'")
            return Range(low, high)
        m = re.fullmatch(r"\d+", text)
        if m:
            return Range(int(text), int(text))
        raise SchemaError(f"{where}: bad version range '{text}' (use 3+, 0-4, 5 or none)")

    def empty(self):
        return self.low > self.high

    def contains(self, version):
        return self.low <= version <= self.high

    def intersect(self, other):
        return Range(max(self.low, other.low), min(self.high, other.high))

    def condition(self, within):
        """A C++ boolean expression of `version` testing this range, simplified
        by knowing that `version` always lies in `within`."""
        r = self.intersect(within)
        if r.empty():
            return "false"
        parts = []
        if r.low > within.low:
            parts.append(f"version >= {r.low}")
        if r.high < within.high:
            parts.append(f"version <= {r.high}")
        if not parts:
            return "true"
        return " && ".join(parts)


class Field:
    def __init__(self, name, type_text, line):
        self.name = name
        self.line = line
        self.is_array = type_text.startswith("[]")
        self.base = type_text[2:] if self.is_array else type_text
        self.versions = None
        self.nullable = Range(1, 0)
        self.tag = None
        self.default = None
        self.children = []
        self.struct = None  # the Struct this field's type names, if any
        self.member = name

    @property
    def is_struct(self):
        return self.base not in PRIMITIVES


class Struct:
    def __init__(self, name, fields, line):
        self.name = name
        self.fields = fields
        self.line = line


class Message:
    def __init__(self, api, kind, fields):
        self.api = api
        self.kind = kind
        self.fields = fields
        self.class_name = f"{api.name}_{kind}"
        self.structs = []  # in dependency order: a struct after every struct it uses


class Api:
    def __init__(self, path):
        self.path = path
        self.name = None
        self.key = None
        self.versions = None
        self.flexible = None
        self.common = {}
        self.messages = {}


def parse_field_line(text, where):
    m = re.fullmatch(r"([a-z][a-z0-9_]*):\s*(\S+)((?:\s+\S+)*)", text)
    if not m:
        raise SchemaError(f"{where}: expected 'name: type [versions=R] [nullable=R] [tag=N] [default=V]'")
    field = Field(m.group(1), m.group(2), where)
    attributes = re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', m.group(3))
    consumed = " ".join(f"{k}={v}" for k, v in attributes)
    if consumed != " ".join(m.group(3).split()):
        raise SchemaError(f"{where}: cannot parse attributes '{m.group(3).strip()}'")
    for key, value in attributes:
        if key == "versions":
            field.versions = Range.parse(value, where)
        elif key == "nullable":
            field.nullable = Range.parse(value, where)
        elif key == "tag":
            if not value.isdigit():
                raise SchemaError(f"{where}: tag must be a non-negative integer")
            field.tag = int(value)
        elif key == "default":
            field.default = value
        else:
            raise SchemaError(f"{where}: unknown attribute '{key}'")
    base = field.base
    if not NAME_RE.match(base):
        raise SchemaError(f"{where}: bad type '{m.group(2)}'")
    return field


def strip_comment(line):
    in_quote = False
    for i, ch in enumerate(line):
        if ch == '"':
            in_quote = not in_quote
        elif ch == "#" and not in_quote:
            return line[:i]
    return line


def parse_file(path):
    api = Api(path)
    base_name = path  # messages name the schema as the build gave it, for file:line
    with open(path, encoding="utf-8") as f:
        raw_lines = f.read().split("\n")
    lines = []  # (line number, indent, text)
    for number, raw in enumerate(raw_lines, 1):
        text = strip_comment(raw).rstrip()
        if not text.strip():
            continue
        if "\t" in text:
            raise SchemaError(f"{base_name}:{number}: tabs are not allowed, indent with spaces")
        indent = len(text) - len(text.lstrip(" "))
        if indent % 2:
            raise SchemaError(f"{base_name}:{number}: indentation must be a multiple of two spaces")
        lines.append((number, indent // 2, text.strip()))

    position = 0

    def parse_block(depth):
        nonlocal position
        fields = []
        while position < len(lines):
            number, level, text = lines[position]
            where = f"{base_name}:{number}"
            if level < depth:
                break
            if level > depth:
                raise SchemaError(f"{where}: unexpected indentation")
            field = parse_field_line(text, where)
            position += 1
            if position < len(lines) and lines[position][1] > depth:
                if not field.is_struct:
                    raise SchemaError(f"{where}: only struct types may have indented children")
                field.children = parse_block(depth + 1)
            fields.append(field)
        return fields

    while position < len(lines):
        number, level, text = lines[position]
        where = f"{base_name}:{number}"
        if level != 0:
            raise SchemaError(f"{where}: unexpected indentation")
        words = text.split()
        position += 1
        if words[0] == "api":
            if api.name is not None:
                raise SchemaError(f"{where}: a second 'api' line")
            if len(words) != 8 or words[2] != "key" or words[4] != "versions" or words[6] != "flexible":
                raise SchemaError(f"{where}: expected 'api NAME key K versions R flexible R'")
            if not NAME_RE.match(words[1]):
                raise SchemaError(f"{where}: api name must be snake_case")
            api.name = words[1]
            if not words[3].isdigit():
                raise SchemaError(f"{where}: api key must be a number")
            api.key = int(words[3])
            api.versions = Range.parse(words[5], where)
            if api.versions.empty() or api.versions.high == INFINITY:
                raise SchemaError(f"{where}: api versions must be a closed range like 0-9")
            flexible = Range.parse(words[7], where)
            if not flexible.empty() and flexible.high != INFINITY:
                raise SchemaError(f"{where}: flexible must be 'N+' or 'none'")
            api.flexible = flexible
        elif words[0] == "struct":
            if len(words) != 2 or not NAME_RE.match(words[1]):
                raise SchemaError(f"{where}: expected 'struct name'")
            if words[1] in api.common:
                raise SchemaError(f"{where}: struct '{words[1]}' defined twice")
            api.common[words[1]] = Struct(words[1], parse_block(1), where)
        elif words[0] in ("request", "response"):
            if len(words) != 1:
                raise SchemaError(f"{where}: expected '{words[0]}' alone on its line")
            if api.name is None:
                raise SchemaError(f"{where}: the 'api' line must come first")
            if words[0] in api.messages:
                raise SchemaError(f"{where}: '{words[0]}' given twice")
            api.messages[words[0]] = Message(api, words[0], parse_block(1))
        else:
            raise SchemaError(f"{where}: expected 'api', 'struct', 'request' or 'response'")
    if api.name is None:
        raise SchemaError(f"{base_name}:1: no 'api' line")
    for kind in ("request", "response"):
        if kind not in api.messages:
            raise SchemaError(f"{base_name}:{len(raw_lines)}: no '{kind}' block")
    return api


# ---------------------------------------------------------------------------
# Resolution: struct references, version defaults, member names, validation.


def resolve_message(message):
    api = message.api
    structs = {}
    order = []

    def visit(fields, scope_versions):
        for field in fields:
            where = field.line
            if field.versions is None:
                field.versions = Range(api.versions.low, api.versions.high)
            if field.tag is not None:
                if api.flexible.empty():
                    raise SchemaError(f"{where}: tagged field in an api without flexible versions")
                if field.versions.intersect(api.versions).low < api.flexible.low:
                    raise SchemaError(f"{where}: a tagged field may exist only in flexible versions")
            if field.is_struct:
                if field.children:
                    struct = Struct(field.base, field.children, where)
                    if field.base in api.common:
                        raise SchemaError(f"{where}: struct '{field.base}' is also a top-level struct")
                else:
                    if field.base not in api.common:
                        raise SchemaError(f"{where}: unknown type '{field.base}' (no children and no 'struct {field.base}' block)")
                    struct = api.common[field.base]
                if field.base in structs:
                    if structs[field.base] is not struct:
                        raise SchemaError(f"{where}: struct '{field.base}' defined twice in the {message.kind}")
                else:
                    structs[field.base] = struct
                    visit(struct.fields, field.versions)
                    order.append(struct)
                field.struct = struct
            check_default(field)

    visit(message.fields, api.versions)
    message.structs = order
    struct_names = set(structs)
    if message.class_name in struct_names:
        raise SchemaError(f"{api.path}: struct named like its message class '{message.class_name}'")

    def name_members(fields, where):
        seen = set()
        for field in fields:
            if field.name in seen:
                raise SchemaError(f"{field.line}: field '{field.name}' given twice in one struct")
            seen.add(field.name)
            member = field.name
            if (member in CPP_KEYWORDS or member in TYPE_NAMES or member in struct_names
                    or member in CLASS_MEMBERS or member in GENERATED_LOCALS):
                member += "_"
            field.member = member
        tags = [f.tag for f in fields if f.tag is not None]
        if len(tags) != len(set(tags)):
            raise SchemaError(f"{where}: a tag is used twice in one struct")

    name_members(message.fields, message.api.path)
    for struct in order:
        name_members(struct.fields, struct.line)


def check_default(field):
    where = field.line
    if field.default is None:
        return
    d = field.default
    if field.is_array or field.is_struct:
        if d != "null":
            raise SchemaError(f"{where}: arrays and structs only accept default=null")
    elif field.base == "bool":
        if d not in ("true", "false"):
            raise SchemaError(f"{where}: bool default must be true or false")
    elif field.base in INTEGER_TYPES:
        try:
            value = int(d, 0)
        except ValueError:
            raise SchemaError(f"{where}: integer default expected, got '{d}'") from None
        low, high = INTEGER_TYPES[field.base]
        if not low <= value <= high:
            raise SchemaError(f"{where}: default {value} out of range for {field.base}")
    elif field.base == "float64":
        try:
            float(d)
        except ValueError:
            raise SchemaError(f"{where}: float default expected") from None
    elif field.base == "string":
        if d != "null" and not (len(d) >= 2 and d[0] == '"' and d[-1] == '"'):
            raise SchemaError(f"{where}: string default must be null or \"quoted\"")
    else:
        if d != "null":
            raise SchemaError(f"{where}: {field.base} only accepts default=null")
    if d == "null" and field.nullable.empty():
        raise SchemaError(f"{where}: default=null on a field that is never nullable")


# ---------------------------------------------------------------------------
# C++ emission.


def is_optional(field):
    """Whether the member is std::optional: nullable in some version, except
    records, which carry their own null flag."""
    return not field.nullable.empty() and field.base != "records"


def element_type(field):
    if field.is_struct:
        return field.struct.name
    return PRIMITIVES[field.base][0]


def member_type(field):
    t = element_type(field)
    if field.is_array:
        t = f"std::vector<{t}>"
    if is_optional(field):
        t = f"std::optional<{t}>"
    return t


def integer_literal(base, value):
    low, high = INTEGER_TYPES[base]
    ctype = PRIMITIVES[base][0]
    if value == low and low != 0:
        return f"std::numeric_limits<{ctype}>::min()"
    if base in ("int64",):
        return f"INT64_C({value})"
    if base == "uint32":
        return f"{value}u"
    return str(value)


def default_initializer(field):
    d = field.default
    if field.is_array or field.is_struct or field.base in ("bytes", "records", "uuid"):
        return ""
    if field.base == "string":
        if d is None or d == "null":
            return ""
        return " = " + d
    if field.base == "bool":
        return " = true" if d == "true" else " = false"
    if field.base == "float64":
        return f" = {float(d) if d else 0.0!r}"
    value = int(d, 0) if d is not None else 0
    if is_optional(field):
        return ""
    return f" = {integer_literal(field.base, value)}"


def null_by_default(field):
    return field.default == "null"


def size_min(fields, version, flexible):
    """The fewest bytes one encoded struct with these fields can take at `version`."""
    total = 0
    for field in fields:
        if not field.versions.contains(version) or field.tag is not None:
            continue
        if field.is_array:
            total += 1 if flexible else 4
        elif field.is_struct:
            total += 1 if field.nullable.contains(version) else size_min(field.struct.fields, version, flexible)
        else:
            _, _, classic, compact = PRIMITIVES[field.base]
            total += compact if flexible else classic
    if flexible:
        total += 1  # the tagged-field count
    return total


class Emitter:
    def __init__(self):
        self.lines = []

    def __call__(self, text="", indent=0):
        self.lines.append(("    " * indent + text) if text else "")

    def text(self):
        return "\n".join(self.lines) + "\n"


def emit_struct_declaration(out, name, fields, indent, is_message, message):
    out(f"struct {name} {{", indent)
    if is_message:
        api = message.api
        flex = api.flexible.low if not api.flexible.empty() else -1
        out(f"static constexpr api_key key = api_key::{api.name};", indent + 1)
        out(f"static constexpr int16_t version_min = {api.versions.low};", indent + 1)
        out(f"static constexpr int16_t version_max = {api.versions.high};", indent + 1)
        out(f"static constexpr int16_t flexible_min = {flex};", indent + 1)
        out("static constexpr bool is_flexible(int16_t version) {", indent + 1)
        out("return flexible_min >= 0 && version >= flexible_min;", indent + 2)
        out("}", indent + 1)
        out()
        for struct in message.structs:
            emit_struct_declaration(out, struct.name, struct.fields, indent + 1, False, message)
            out()
    for field in fields:
        out(f"{member_type(field)} {field.member}{default_initializer(field)};", indent + 1)
    if fields:
        out()
    out("// Calls visit(context, code) for every error_code field, nested ones included (the", indent + 1)
    out("// broker's per-API error counts, as Kafka's errorCounts()).", indent + 1)
    out("void visit_error_codes(void (*visit)(void*, int16_t), void* context) const;", indent + 1)
    if is_message:
        out("// Encodes the body (no header) at `version`; fields absent in `version` are skipped.", indent + 1)
        out("void encode(writer& out, int16_t version) const;", indent + 1)
        out("// The number of bytes encode() produces, external records included.", indent + 1)
        out("size_t encoded_size(int16_t version) const;", indent + 1)
        out("// Decodes the body; false on malformed input (the reader's sticky error says why).", indent + 1)
        out("bool decode(reader& in, int16_t version);", indent + 1)
        out("// Test support: every field present at `version` gets a deterministic non-default", indent + 1)
        out("// value (arrays get two elements); same_at compares only fields present at `version`.", indent + 1)
        out("void fill_sample(int16_t version);", indent + 1)
        out(f"bool same_at(const {name}& other, int16_t version) const;", indent + 1)
        out()
        out("// Shared by encode() and encoded_size(): Out is writer or size_counter.", indent + 1)
        out("template <class Out>", indent + 1)
        out("void write(Out& out, int16_t version) const;", indent + 1)
        out("void read(reader& in, int16_t version);", indent + 1)
    else:
        out("template <class Out>", indent + 1)
        out("void write(Out& out, int16_t version) const;", indent + 1)
        out("void read(reader& in, int16_t version);", indent + 1)
        out("void fill_sample(int16_t version);", indent + 1)
        out(f"bool same_at(const {name}& other, int16_t version) const;", indent + 1)
    out("};", indent)


class CodeGen:
    """Generates the bodies of one message's functions."""

    def __init__(self, message):
        self.message = message
        self.api = message.api
        self.cls = message.class_name
        self.counter = 0

    def qualified(self, struct_name):
        return f"{self.cls}::{struct_name}"

    # --- writing -----------------------------------------------------------

    def write_value(self, out, field, expr, sink, indent, within):
        """Emits the statements that write `expr` (the member) to `sink`."""
        nullable_cond = field.nullable.condition(within)
        if field.is_array:
            self.write_array(out, field, expr, sink, indent, nullable_cond, within)
            return
        if field.is_struct:
            if is_optional(field):
                out(f"if ({expr}) {{", indent)
                if nullable_cond != "false":
                    out(f"if ({nullable_cond}) {sink}.int8(1);", indent + 1)
                out(f"{expr}->write({sink}, version);", indent + 1)
                out("} else {", indent)
                if nullable_cond != "false":
                    out(f"if ({nullable_cond}) {sink}.int8(-1);", indent + 1)
                    out(f"else {element_type(field)}{{}}.write({sink}, version);", indent + 1)
                else:
                    out(f"{element_type(field)}{{}}.write({sink}, version);", indent + 1)
                out("}", indent)
            else:
                out(f"{expr}.write({sink}, version);", indent)
            return
        self.write_scalar(out, field.base, expr, sink, indent, is_optional(field), nullable_cond)

    def write_scalar(self, out, base, expr, sink, indent, optional, nullable_cond):
        if base in ("bool", "int8", "int16", "int32", "int64", "uint16", "uint32", "float64", "uuid"):
            method = PRIMITIVES[base][1]
            value = f"{expr}.value_or({PRIMITIVES[base][0]}{{}})" if optional else expr
            out(f"{sink}.{method}({value});", indent)
        elif base == "string":
            if optional:
                if nullable_cond == "true":
                    out(f"{sink}.nullable_string({expr}, flexible);", indent)
                else:
                    out(f"if ({nullable_cond}) {sink}.nullable_string({expr}, flexible);", indent)
                    out(f"else {sink}.string({expr} ? std::string_view(*{expr}) : std::string_view(), flexible);", indent)
            else:
                out(f"{sink}.string({expr}, flexible);", indent)
        elif base == "bytes":
            if optional:
                view = f"({expr} ? std::optional<std::span<const uint8_t>>(*{expr}) : std::nullopt)"
                if nullable_cond == "true":
                    out(f"{sink}.nullable_bytes({view}, flexible);", indent)
                else:
                    out(f"if ({nullable_cond}) {sink}.nullable_bytes({view}, flexible);", indent)
                    out(f"else {sink}.bytes({expr} ? std::span<const uint8_t>(*{expr}) : std::span<const uint8_t>(), flexible);", indent)
            else:
                out(f"{sink}.bytes(std::span<const uint8_t>({expr}), flexible);", indent)
        elif base == "records":
            out(f"{sink}.records_field({expr}, flexible);", indent)
        else:
            raise AssertionError(base)

    def write_array(self, out, field, expr, sink, indent, nullable_cond, within):
        optional = is_optional(field)
        if optional:
            if nullable_cond != "false":
                out(f"if (!{expr} && ({nullable_cond})) {{", indent)
                out(f"{sink}.array_count(-1, flexible);", indent + 1)
                out("} else {", indent)
            else:
                out("{", indent)
            items = f"items_{self.counter}"
            self.counter += 1
            out(f"static const {member_type(field)[len('std::optional<'):-1]} no_items;", indent + 1)
            out(f"const auto& {items} = {expr} ? *{expr} : no_items;", indent + 1)
            self.write_items(out, field, items, sink, indent + 1)
            out("}", indent)
        else:
            self.write_items(out, field, expr, sink, indent)

    def write_items(self, out, field, items, sink, indent):
        out(f"{sink}.array_count(static_cast<int32_t>({items}.size()), flexible);", indent)
        item = f"item_{self.counter}"
        self.counter += 1
        out(f"for (const auto& {item} : {items}) {{", indent)
        if field.is_struct:
            out(f"{item}.write({sink}, version);", indent + 1)
        else:
            self.write_scalar(out, field.base, item, sink, indent + 1, False, "false")
        out("}", indent)

    def non_default_condition(self, field, expr):
        """A C++ expression that is true when a tagged field must be written."""
        if field.is_array:
            if is_optional(field):
                if null_by_default(field):
                    return f"{expr}.has_value()"
                return f"({expr} && !{expr}->empty())"
            return f"!{expr}.empty()"
        if field.is_struct:
            if is_optional(field):
                return f"{expr}.has_value()"
            return f"!{expr}.same_at({element_type(field)}{{}}, version)"
        if is_optional(field):
            if null_by_default(field):
                return f"{expr}.has_value()"
            base_default = self.plain_default(field)
            return f"({expr} && *{expr} != {base_default})"
        if field.base == "records":
            return f"({expr}.is_null || {expr}.size() != 0)"
        if field.base == "uuid":
            return f"!{expr}.is_zero()"
        if field.base == "bytes":
            return f"!{expr}.empty()"
        return f"{expr} != {self.plain_default(field)}"

    def plain_default(self, field):
        d = field.default
        if field.base == "string":
            return d if d and d != "null" else '""'
        if field.base == "bool":
            return "true" if d == "true" else "false"
        if field.base == "float64":
            return repr(float(d)) if d else "0.0"
        value = int(d, 0) if d is not None else 0
        return f"{PRIMITIVES[field.base][0]}({integer_literal(field.base, value)})"

    def emit_write(self, out, fields, this, within):
        out("const bool flexible = " + self.flexible_expr() + ";", 1)
        out("(void)flexible;", 1)
        for field in fields:
            if field.tag is not None:
                continue
            cond = field.versions.condition(within)
            if cond == "false":
                continue
            expr = f"{this}{field.member}"
            if cond == "true":
                self.write_value(out, field, expr, "out", 1, within)
            else:
                out(f"if ({cond}) {{", 1)
                self.write_value(out, field, expr, "out", 2, within)
                out("}", 1)
        tagged = sorted((f for f in fields if f.tag is not None), key=lambda f: f.tag)
        out("if (flexible) {", 1)
        if not tagged:
            out("out.unsigned_varint(0);", 2)
        else:
            conditions = []
            for field in tagged:
                exist = field.versions.condition(within)
                conditions.append(f"(({exist}) && {self.non_default_condition(field, this + field.member)})")
            out("uint32_t tagged_count = 0;", 2)
            for c in conditions:
                out(f"if {c} ++tagged_count;", 2)
            out("out.unsigned_varint(tagged_count);", 2)
            for field, c in zip(tagged, conditions):
                out(f"if {c} {{", 2)
                out("size_counter inner;", 3)
                self.write_value(out, field, this + field.member, "inner", 3, within)
                out(f"out.unsigned_varint({field.tag});", 3)
                out("out.unsigned_varint(inner.size());", 3)
                self.write_value(out, field, this + field.member, "out", 3, within)
                out("}", 2)
        out("}", 1)

    def flexible_expr(self):
        return f"{self.cls}::is_flexible(version)"

    # --- reading -----------------------------------------------------------

    def read_value(self, out, field, expr, source, indent, within):
        nullable_cond = field.nullable.condition(within)
        if field.is_array:
            self.read_array(out, field, expr, source, indent, nullable_cond, within)
            return
        if field.is_struct:
            if is_optional(field):
                # Not emplace(): clang 14 rejects emplace() of a nested struct with default
                # member initialisers; assigning a value-initialised one works everywhere.
                fresh = f"{expr} = std::decay_t<decltype({expr})>::value_type{{}}; {expr}->read({source}, version);"
                if nullable_cond == "false":
                    out(fresh, indent)
                else:
                    out(f"if (!({nullable_cond}) || {source}.int8() >= 0) {{ {fresh} }}", indent)
                    out(f"else {expr}.reset();", indent)
            else:
                out(f"{expr}.read({source}, version);", indent)
            return
        self.read_scalar(out, field.base, expr, source, indent, is_optional(field), nullable_cond)

    def read_scalar(self, out, base, expr, source, indent, optional, nullable_cond):
        if base in ("bool", "int8", "int16", "int32", "int64", "uint16", "uint32", "float64", "uuid"):
            out(f"{expr} = {source}.{PRIMITIVES[base][1]}();", indent)
        elif base == "string":
            if optional and nullable_cond != "false":
                if nullable_cond == "true":
                    out(f"{expr} = {source}.nullable_string(flexible);", indent)
                else:
                    out(f"if ({nullable_cond}) {expr} = {source}.nullable_string(flexible);", indent)
                    out(f"else {expr} = {source}.string(flexible);", indent)
            else:
                out(f"{expr} = {source}.string(flexible);", indent)
        elif base == "bytes":
            view = f"view_{self.counter}"
            self.counter += 1
            if optional and nullable_cond != "false":
                out("{", indent)
                out(f"std::optional<std::span<const uint8_t>> {view};", indent + 1)
                if nullable_cond == "true":
                    out(f"{view} = {source}.nullable_bytes(flexible);", indent + 1)
                else:
                    out(f"if ({nullable_cond}) {view} = {source}.nullable_bytes(flexible);", indent + 1)
                    out(f"else {view} = {source}.bytes(flexible);", indent + 1)
                out(f"if ({view}) {expr}.emplace({view}->begin(), {view}->end());", indent + 1)
                out(f"else {expr}.reset();", indent + 1)
                out("}", indent)
            else:
                out("{", indent)
                out(f"const std::span<const uint8_t> {view} = {source}.bytes(flexible);", indent + 1)
                if optional:
                    out(f"{expr}.emplace({view}.begin(), {view}.end());", indent + 1)
                else:
                    out(f"{expr}.assign({view}.begin(), {view}.end());", indent + 1)
                out("}", indent)
        elif base == "records":
            view = f"view_{self.counter}"
            self.counter += 1
            out("{", indent)
            out(f"const std::optional<std::span<const uint8_t>> {view} = {source}.nullable_bytes(flexible);", indent + 1)
            out(f"{expr} = records{{}};", indent + 1)
            out(f"if ({view}) {expr}.bytes = *{view};", indent + 1)
            cond = nullable_cond
            if cond == "false":
                out(f"else if ({source}.ok()) {source}.fail(decode_error::negative_length);", indent + 1)
            elif cond == "true":
                out(f"else {expr}.is_null = true;", indent + 1)
            else:
                out(f"else if ({cond}) {expr}.is_null = true;", indent + 1)
                out(f"else if ({source}.ok()) {source}.fail(decode_error::negative_length);", indent + 1)
            out("}", indent)
        else:
            raise AssertionError(base)

    def element_min_expr(self, field, within):
        if field.is_struct:
            return f"{self.cls}_{field.struct.name}_size_min(version)"
        _, _, classic, compact = PRIMITIVES[field.base]
        if classic == compact:
            return str(classic)
        return f"(flexible ? {compact} : {classic})"

    def read_array(self, out, field, expr, source, indent, nullable_cond, within):
        count = f"count_{self.counter}"
        self.counter += 1
        out("{", indent)
        out(f"const int32_t {count} = {source}.array_count(flexible, {self.element_min_expr(field, within)});", indent + 1)
        out(f"if ({count} < 0) {{", indent + 1)
        if is_optional(field) and nullable_cond != "false":
            if nullable_cond == "true":
                out(f"{expr}.reset();", indent + 2)
            else:
                out(f"if ({nullable_cond}) {expr}.reset();", indent + 2)
                out(f"else if ({source}.ok()) {source}.fail(decode_error::negative_length);", indent + 2)
        else:
            out(f"if ({source}.ok()) {source}.fail(decode_error::negative_length);", indent + 2)
        out("} else {", indent + 1)
        target = expr
        if is_optional(field):
            out(f"auto& items = {expr}.emplace();", indent + 2)
            target = "items"
        out(f"{target}.clear();", indent + 2)
        out(f"{target}.resize(static_cast<size_t>({count}));", indent + 2)
        item = f"item_{self.counter}"
        self.counter += 1
        out(f"for (auto& {item} : {target}) {{", indent + 2)
        out(f"if (!{source}.ok()) break;", indent + 3)
        if field.is_struct:
            out(f"{item}.read({source}, version);", indent + 3)
        else:
            self.read_scalar(out, field.base, item, source, indent + 3, False, "false")
        out("}", indent + 2)
        out("}", indent + 1)
        out("}", indent)

    def emit_read(self, out, fields, this, within):
        out("const bool flexible = " + self.flexible_expr() + ";", 1)
        out("(void)flexible;", 1)
        for field in fields:
            if field.tag is not None:
                continue
            cond = field.versions.condition(within)
            if cond == "false":
                continue
            expr = f"{this}{field.member}"
            if cond == "true":
                self.read_value(out, field, expr, "in", 1, within)
            else:
                out(f"if ({cond}) {{", 1)
                self.read_value(out, field, expr, "in", 2, within)
                out("}", 1)
        tagged = sorted((f for f in fields if f.tag is not None), key=lambda f: f.tag)
        out("if (!flexible || !in.ok()) return;", 1)
        if not tagged:
            out("in.skip_tagged_fields();", 1)
            return
        out("const uint32_t tagged_count = in.unsigned_varint();", 1)
        out("if (tagged_count > in.remaining()) {", 1)
        out("in.fail(decode_error::too_large);", 2)
        out("return;", 2)
        out("}", 1)
        out("for (uint32_t i = 0; i < tagged_count && in.ok(); ++i) {", 1)
        out("const uint32_t tag = in.unsigned_varint();", 2)
        out("const uint32_t size = in.unsigned_varint();", 2)
        out("const std::span<const uint8_t> body = in.raw(size);", 2)
        out("if (!in.ok()) return;", 2)
        out("reader sub(body);", 2)
        out("switch (tag) {", 2)
        for field in tagged:
            exist = field.versions.condition(within)
            out(f"case {field.tag}:", 3)
            out(f"if (!({exist})) break;", 4)
            self.read_value(out, field, f"{this}{field.member}", "sub", 4, within)
            out("if (!sub.ok()) in.fail(sub.error());", 4)
            out("break;", 4)
        out("default:", 3)
        out("break;  // Unknown tags are skipped, as the protocol requires.", 4)
        out("}", 2)
        out("}", 1)

    # --- samples and comparison ---------------------------------------------

    def sample_scalar(self, base, field):
        self.counter += 1
        n = self.counter
        if base == "bool":
            if field is not None and field.default == "true":
                return "false"
            return "true"
        if base in INTEGER_TYPES:
            low, high = INTEGER_TYPES[base]
            value = 7 + (n * 37) % 90
            if field is not None and field.default not in (None, "null") and int(field.default, 0) == value:
                value += 1
            return f"{PRIMITIVES[base][0]}({integer_literal(base, value)})"
        if base == "float64":
            return f"{n}.5"
        if base == "uuid":
            return f"sample_uuid({n})"
        if base == "string":
            return f'std::string("sample-{n}")'
        if base == "bytes":
            return f"std::vector<uint8_t>{{{n % 256}, 2, 3}}"
        if base == "records":
            return "sample_records()"
        raise AssertionError(base)

    def emit_fill(self, out, fields, this, within):
        for field in fields:
            cond = field.versions.condition(within)
            if cond == "false":
                continue
            expr = f"{this}{field.member}"
            body = []
            if field.is_array:
                if field.is_struct:
                    inner = f"std::vector<{element_type(field)}>(2)"
                    body.append(f"{expr} = {inner};")
                    target = f"(*{expr})" if is_optional(field) else expr
                    body.append(f"for (auto& item : {target}) item.fill_sample(version);")
                else:
                    a = self.sample_scalar(field.base, None)
                    b = self.sample_scalar(field.base, None)
                    body.append(f"{expr} = std::vector<{element_type(field)}>{{{a}, {b}}};")
            elif field.is_struct:
                if is_optional(field):
                    body.append(f"{expr} = std::decay_t<decltype({expr})>::value_type{{}};")
                    body.append(f"{expr}->fill_sample(version);")
                else:
                    body.append(f"{expr}.fill_sample(version);")
            else:
                body.append(f"{expr} = {self.sample_scalar(field.base, field)};")
            if cond == "true":
                for line in body:
                    out(line, 1)
            else:
                out(f"if ({cond}) {{", 1)
                for line in body:
                    out(line, 2)
                out("}", 1)

    def same_scalar(self, base, a, b):
        if base == "records":
            return f"same_records({a}, {b})"
        return f"{a} == {b}"

    def emit_errors(self, out, fields):
        out("(void)visit;", 1)
        out("(void)context;", 1)
        for field in fields:
            m = field.member
            if field.is_struct:
                each = "item.visit_error_codes(visit, context);"
                if field.is_array:
                    items = f"*{m}" if is_optional(field) else m
                    loop = f"for (const auto& item : {items}) {each}"
                    out(f"if ({m}) {loop}" if is_optional(field) else loop, 1)
                elif is_optional(field):
                    out(f"if ({m}) {m}->visit_error_codes(visit, context);", 1)
                else:
                    out(f"{m}.visit_error_codes(visit, context);", 1)
            elif field.name == "error_code" and field.base == "int16" and not field.is_array:
                out(f"visit(context, {m});", 1)

    def emit_same(self, out, fields, this, within):
        for field in fields:
            cond = field.versions.condition(within)
            if cond == "false":
                continue
            a = f"{this}{field.member}"
            b = f"other.{field.member}"
            if field.is_array:
                if field.is_struct:
                    test = f"!same_items({a}, {b}, version)"
                else:
                    test = f"!({a} == {b})"
            elif field.is_struct:
                if is_optional(field):
                    test = f"!same_struct({a}, {b}, version)"
                else:
                    test = f"!{a}.same_at({b}, version)"
            else:
                test = f"!({self.same_scalar(field.base, a, b)})"
            if cond == "true":
                out(f"if ({test}) return false;", 1)
            else:
                out(f"if (({cond}) && {test}) return false;", 1)
        out("return true;", 1)


def emit_message_definitions(out, sizes_out, message):
    gen = CodeGen(message)
    cls = message.class_name
    within = message.api.versions
    # Minimal element sizes, one per version, so hostile array counts cannot allocate.
    for struct in message.structs:
        versions = range(0, within.high + 1)
        sizes = []
        for v in versions:
            flexible = not message.api.flexible.empty() and message.api.flexible.contains(v)
            sizes.append(str(max(1, size_min(struct.fields, v, flexible))))
        sizes_out(f"[[maybe_unused]] size_t {cls}_{struct.name}_size_min(int16_t version) {{", 0)
        sizes_out(f"static constexpr size_t by_version[] = {{{', '.join(sizes)}}};", 1)
        sizes_out("return by_version[static_cast<size_t>(version)];", 1)
        sizes_out("}", 0)
    entries = [(s.name, s.fields, f"{cls}::{s.name}") for s in message.structs]
    entries.append((cls, message.fields, cls))
    for name, fields, qualified in entries:
        out("template <class Out>")
        out(f"void {qualified}::write(Out& out, int16_t version) const {{")
        gen.emit_write(out, fields, "", within)
        out("}")
        out()
        out(f"void {qualified}::read(reader& in, int16_t version) {{")
        gen.emit_read(out, fields, "", within)
        out("}")
        out()
        out(f"void {qualified}::fill_sample(int16_t version) {{")
        out("(void)version;", 1)
        gen.emit_fill(out, fields, "", within)
        out("}")
        out()
        out(f"void {qualified}::visit_error_codes(void (*visit)(void*, int16_t), void* context) const {{")
        gen.emit_errors(out, fields)
        out("}")
        out()
        out(f"bool {qualified}::same_at(const {qualified}& other, int16_t version) const {{")
        out("(void)other;", 1)
        out("(void)version;", 1)
        gen.emit_same(out, fields, "", within)
        out("}")
        out()
    out(f"void {cls}::encode(writer& out, int16_t version) const {{")
    out("SPATE_ASSERT(version >= version_min && version <= version_max, \"encode at an unsupported version\");", 1)
    out("write(out, version);", 1)
    out("}")
    out()
    out(f"size_t {cls}::encoded_size(int16_t version) const {{")
    out("SPATE_ASSERT(version >= version_min && version <= version_max, \"size at an unsupported version\");", 1)
    out("size_counter counter;", 1)
    out("write(counter, version);", 1)
    out("return counter.size();", 1)
    out("}")
    out()
    out(f"bool {cls}::decode(reader& in, int16_t version) {{")
    out("// The version comes from the peer: an unsupported one is an input error, not a bug.", 1)
    out("if (version < version_min || version > version_max) {", 1)
    out("in.fail(decode_error::bad_value);", 2)
    out("return false;", 2)
    out("}", 1)
    out(f"*this = {cls}{{}};", 1)
    out("read(in, version);", 1)
    out("return in.ok();", 1)
    out("}")
    out()
    for _, _, qualified in entries:
        out(f"template void {qualified}::write<writer>(writer&, int16_t) const;")
        out(f"template void {qualified}::write<size_counter>(size_counter&, int16_t) const;")
    out()


HEADER_PROLOGUE = """\
#pragma once
// GENERATED by proto/gen/generate.py from proto/schema/*.api. Do not edit: change the
// schema or the generator and rebuild.
//
// One struct per Kafka request and response body. Each owns its data except `records`
// fields, which point into the buffer they were decoded from (the caller keeps that
// buffer alive) or describe external bytes the sender splices in. The structs are plain
// values with no thread affinity; whoever holds one may use it.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "proto/reader.h"
#include "proto/types.h"
#include "proto/writer.h"

namespace spate::proto {
"""


def generate(apis, output_dir):
    apis = sorted(apis, key=lambda a: a.key)
    h = Emitter()
    h.lines.append(HEADER_PROLOGUE)
    h("// Every API spate describes, by its Kafka api key.")
    h("enum class api_key : int16_t {")
    for api in apis:
        h(f"{api.name} = {api.key},", 1)
    h("};")
    h()
    h("// What the codec can encode and decode; the broker's handler list narrows it.")
    h("struct api_description {")
    h("api_key key;", 1)
    h("const char* name;", 1)
    h("int16_t version_min;", 1)
    h("int16_t version_max;", 1)
    h("int16_t flexible_min;  // -1 if no served version is flexible", 1)
    h("};")
    h()
    h("// All described APIs, sorted by key.")
    h("std::span<const api_description> all_apis();")
    h("// The description of `key`, or nullptr if spate does not describe it.")
    h("const api_description* find_api(int16_t key);")
    h()
    for api in apis:
        for kind in ("request", "response"):
            message = api.messages[kind]
            emit_struct_declaration(h, message.class_name, message.fields, 0, True, message)
            h()
    for kind in ("request", "response"):
        h(f"// Calls visitor(std::type_identity<T>{{}}) where T is the {kind} struct of `key`, so")
        h("// generic code (tests, fuzzers, dispatch) reaches every API from one switch.")
        h("// Returns false, calling nothing, when spate does not describe `key`.")
        h("template <class Visitor>")
        h(f"bool visit_{kind}_type(int16_t key, Visitor&& visitor) {{")
        h("switch (key) {", 1)
        for api in apis:
            h(f"case {api.key}:", 2)
            h(f"visitor(std::type_identity<{api.name}_{kind}>{{}});", 3)
            h("return true;", 3)
        h("default:", 2)
        h("return false;", 3)
        h("}", 1)
        h("}")
        h()
    h("}  // namespace spate::proto")

    c = Emitter()
    c("// GENERATED by proto/gen/generate.py from proto/schema/*.api. Do not edit.")
    c("#include \"proto/messages.h\"")
    c()
    c("#include <algorithm>")
    c("#include <cstring>")
    c("#include <limits>")
    c()
    c("#include \"proto/assert.h\"")
    c()
    c("namespace spate::proto {")
    c("namespace {")
    c()
    c("// Test-support values; static storage so sample `records` spans never dangle.")
    c("constexpr uint8_t sample_record_bytes[] = {0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 3, 's', 'p', 'a'};")
    c("records sample_records() {")
    c("records out;", 1)
    c("out.bytes = std::span<const uint8_t>(sample_record_bytes, sizeof(sample_record_bytes));", 1)
    c("return out;", 1)
    c("}")
    c()
    c("uuid sample_uuid(int seed) {")
    c("uuid out;", 1)
    c("for (size_t i = 0; i < out.bytes.size(); ++i) out.bytes[i] = static_cast<uint8_t>(seed + static_cast<int>(i));", 1)
    c("return out;", 1)
    c("}")
    c()
    c("bool same_records(const records& a, const records& b) {")
    c("if (a.is_null != b.is_null) return false;", 1)
    c("if (a.is_null) return true;", 1)
    c("return std::equal(a.bytes.begin(), a.bytes.end(), b.bytes.begin(), b.bytes.end());", 1)
    c("}")
    c()
    c("template <class T>")
    c("bool same_items(const std::vector<T>& a, const std::vector<T>& b, int16_t version) {")
    c("if (a.size() != b.size()) return false;", 1)
    c("for (size_t i = 0; i < a.size(); ++i)", 1)
    c("if (!a[i].same_at(b[i], version)) return false;", 2)
    c("return true;", 1)
    c("}")
    c()
    c("template <class T>")
    c("bool same_items(const std::optional<std::vector<T>>& a, const std::optional<std::vector<T>>& b,")
    c("int16_t version) {", 4)
    c("if (a.has_value() != b.has_value()) return false;", 1)
    c("return !a || same_items(*a, *b, version);", 1)
    c("}")
    c()
    c("template <class T>")
    c("bool same_struct(const std::optional<T>& a, const std::optional<T>& b, int16_t version) {")
    c("if (a.has_value() != b.has_value()) return false;", 1)
    c("return !a || a->same_at(*b, version);", 1)
    c("}")
    c()
    c("constexpr api_description descriptions[] = {")
    for api in apis:
        flex = api.flexible.low if not api.flexible.empty() else -1
        c(f"{{api_key::{api.name}, \"{api.name}\", {api.versions.low}, {api.versions.high}, {flex}}},", 1)
    c("};")
    c()
    c("}  // namespace")
    c()
    c("std::span<const api_description> all_apis() { return descriptions; }")
    c()
    c("const api_description* find_api(int16_t key) {")
    c("for (const api_description& d : descriptions)", 1)
    c("if (static_cast<int16_t>(d.key) == key) return &d;", 2)
    c("return nullptr;", 1)
    c("}")
    c()
    for api in apis:
        for kind in ("request", "response"):
            message = api.messages[kind]
            c(f"// {message.class_name}")
            sizes = Emitter()
            body = Emitter()
            emit_message_definitions(body, sizes, message)
            # The minimal element sizes live in the anonymous namespace; the rest follows it.
            if sizes.lines:
                c("namespace {")
                c.lines.extend(sizes.lines)
                c("}  // namespace")
                c()
            c.lines.extend(body.lines)
    c("}  // namespace spate::proto")

    os.makedirs(output_dir, exist_ok=True)
    write_if_changed(os.path.join(output_dir, "messages.h"), h.text())
    write_if_changed(os.path.join(output_dir, "messages.cc"), c.text())


def write_if_changed(path, text):
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return
    except FileNotFoundError:
        pass
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main(argv):
    if len(argv) < 3:
        print("usage: generate.py OUTPUT_DIR SCHEMA.api...", file=sys.stderr)
        return 2
    output_dir = argv[1]
    apis = []
    try:
        for path in argv[2:]:
            api = parse_file(path)
            for message in api.messages.values():
                resolve_message(message)
            apis.append(api)
        seen = {}
        for api in apis:
            for other in (seen.get(("key", api.key)), seen.get(("name", api.name))):
                if other is not None:
                    raise SchemaError(f"{api.path}:1: api '{api.name}' (key {api.key}) clashes with {other.path}")
            seen[("key", api.key)] = api
            seen[("name", api.name)] = api
    except SchemaError as failure:
        print(f"error: {failure}", file=sys.stderr)
        return 1
    generate(apis, output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
