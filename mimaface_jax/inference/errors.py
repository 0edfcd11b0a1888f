"""The error ``animate`` and ``export`` report as one line (the message names the file)."""


class AnimateError(ValueError):
    """Bad input to a generation program: printed as ``animate: error: <message>``, exit 1."""


def quiet_mediapipe():
    """Silence MediaPipe's start-up output: its C++ logs (file descriptor 2, as ``face.inspect``
    does) and its Python-level notices (``sys.stderr``), so an error stays one line."""
    import contextlib
    import io

    from mimaface_jax.face.inspect import quiet_native_stderr

    stack = contextlib.ExitStack()
    stack.enter_context(quiet_native_stderr())
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    return stack
