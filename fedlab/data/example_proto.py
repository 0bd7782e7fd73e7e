"""``tf.train.Example``, the record TFF's SQLite client data stores, read without TensorFlow.

fedlab's data package stays NumPy-only (so that loading and checking data never waits for
TensorFlow's import). The message types are declared here from TensorFlow's
``tensorflow/core/example/{example,feature}.proto`` (field names and numbers) in a private
protobuf descriptor pool, and parsed with the ``protobuf`` runtime TensorFlow itself uses: the
same wire format, byte for byte (``tests/test_shakespeare.py`` writes its files with TFF).
"""

from __future__ import annotations

import functools

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = "fedlab.tfexample"


def _message(file, name: str, fields: list[tuple[str, int, int, int, str]]) -> None:
    message = file.message_type.add(name=name)
    for field_name, number, label, kind, type_name in fields:
        field = message.field.add(name=field_name, number=number, label=label, type=kind)
        if type_name:
            field.type_name = f".{_PACKAGE}.{type_name}"


@functools.cache
def example_class():
    """The ``Example`` message class (features: map<string, Feature>)."""
    F = descriptor_pb2.FieldDescriptorProto  # noqa: N806
    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    file = descriptor_pb2.FileDescriptorProto(
        name="fedlab_tf_example.proto", package=_PACKAGE, syntax="proto3"
    )
    _message(file, "BytesList", [("value", 1, rep, F.TYPE_BYTES, "")])
    _message(file, "FloatList", [("value", 1, rep, F.TYPE_FLOAT, "")])
    _message(file, "Int64List", [("value", 1, rep, F.TYPE_INT64, "")])
    _message(
        file,
        "Feature",
        [
            ("bytes_list", 1, opt, F.TYPE_MESSAGE, "BytesList"),
            ("float_list", 2, opt, F.TYPE_MESSAGE, "FloatList"),
            ("int64_list", 3, opt, F.TYPE_MESSAGE, "Int64List"),
        ],
    )
    features = file.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, label=opt, type=F.TYPE_STRING)
    entry.field.add(
        name="value", number=2, label=opt, type=F.TYPE_MESSAGE, type_name=f".{_PACKAGE}.Feature"
    )
    features.field.add(
        name="feature",
        number=1,
        label=rep,
        type=F.TYPE_MESSAGE,
        type_name=f".{_PACKAGE}.Features.FeatureEntry",
    )
    _message(file, "Example", [("features", 1, opt, F.TYPE_MESSAGE, "Features")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.Example"))
