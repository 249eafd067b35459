"""Array views for the compiled meeting that cost no reference counting.

Every view numba makes (``W[cur, row, :d]``, ``inputs[k, a:b]``) shares its parent's meminfo,
so making one increments a reference count and dropping it decrements it again, each an
atomic read-modify-write (``lock xadd``) behind a call, and passing views to a kernel that
LLVM does not inline keeps every one of them. At ``every: 1`` a meeting made and dropped
about ten views: two ranks in one process, d = 100, ~40 ns of a 190 ns meeting.

``borrowed(view)`` is the same view with no meminfo: numba's increments and decrements of it
test a null pointer and return. It is safe only while its parent is alive, which is why the
meeting borrows only views of its own arguments, for the length of one meeting.
"""

from __future__ import annotations

from typing import Any

from numba.core import types
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array


def _borrowed_impl(typingctx: Any, view: Any) -> Any:
    if not isinstance(view, types.Array):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty = signature.args[0]
        source = make_array(aryty)(context, builder, args[0])
        out = make_array(signature.return_type)(context, builder)
        populate_array(
            out,
            data=source.data,
            shape=source.shape,
            strides=source.strides,
            itemsize=source.itemsize,
            meminfo=None,
        )
        return out._getvalue()

    return view(view), codegen


borrowed: Any = intrinsic(_borrowed_impl)
