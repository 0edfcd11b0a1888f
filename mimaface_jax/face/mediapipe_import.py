"""Importing MediaPipe 0.10.21 on protobuf >= 5 (the project's pins, see requirements/mediapipe.txt).

Its bindings call ``MessageFactory.GetPrototype``, which protobuf 5 removed in favour of the
module function ``message_factory.GetMessageClass``. When any protobuf-generated module was
loaded before MediaPipe (TensorFlow, tfds, grain all load some), the call fails inside the
import and ``AttributeError: 'MessageFactory' object has no attribute 'GetPrototype'`` is
printed: harmless, but a user reads it as a crash. Restoring the method as the thin alias it
was (same result: the message class of a descriptor) lets the bindings finish cleanly.
"""

from __future__ import annotations


def restore_get_prototype() -> None:
    from google.protobuf import message_factory

    if not hasattr(message_factory.MessageFactory, "GetPrototype"):
        def get_prototype(self, descriptor):  # noqa: ARG001 (the factory's pool is not needed)
            return message_factory.GetMessageClass(descriptor)

        message_factory.MessageFactory.GetPrototype = get_prototype


def import_mediapipe():
    """The ``mediapipe`` module, imported without the protobuf noise (module docstring)."""
    restore_get_prototype()
    import mediapipe

    return mediapipe
