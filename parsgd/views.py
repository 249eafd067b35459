"""Array views that cost no reference counting, and prefetches, for the compiled meeting.

Every view numba makes (``W[cur, row, :d]``, ``inputs[k, a:b]``) shares its parent's meminfo,
so making one increments a reference count and dropping it decrements it again, each an
atomic read-modify-write (``lock xadd``) behind a call, and passing views to a kernel that
LLVM does not inline keeps every one of them. At ``every: 1`` a meeting made and dropped
about ten views: two ranks in one process, d = 100, ~30 ns of a 190 ns meeting.

``borrowed(view)`` is the same view with no meminfo: numba's increments and decrements of it
test a null pointer and return. It is safe only while its parent is alive, which is why the
meeting borrows only its own arguments and views of them, while it runs. A tuple (a
problem's pack of arrays, ``steps.Pack``) is borrowed member by member: passing the pack
into a step increments the count of every array in it, otherwise, around every call.

``prefetch(array, i)`` asks the CPU for the cache line of ``array[i]`` without waiting for it:
the meeting fetches the next step's sample that way before its barrier (steps.fetch_ahead).
Dense d = 100, n = 1e5, M = 2, every 1: the step after a meeting no longer starts with a
miss to memory.
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array

_TUPLES = (types.Tuple, types.UniTuple, types.NamedTuple, types.NamedUniTuple)


def _borrow(context: Any, builder: Any, typ: Any, value: Any) -> Any:
    """``value`` of numba type ``typ`` with every array in it (through tuples) borrowed."""
    if isinstance(typ, types.Array):
        source = make_array(typ)(context, builder, value)
        out = make_array(typ)(context, builder)
        populate_array(
            out,
            data=source.data,
            shape=source.shape,
            strides=source.strides,
            itemsize=source.itemsize,
            meminfo=None,
        )
        return out._getvalue()
    if isinstance(typ, _TUPLES):
        for i, member in enumerate(typ.types):
            if _holds_arrays(member):
                item = _borrow(context, builder, member, builder.extract_value(value, i))
                value = builder.insert_value(value, item, i)
    return value


def _holds_arrays(typ: Any) -> bool:
    if isinstance(typ, types.Array):
        return True
    return isinstance(typ, _TUPLES) and any(_holds_arrays(t) for t in typ.types)


def _borrowed_impl(typingctx: Any, view: Any) -> Any:
    """An array, or a tuple (a problem's NamedTuple pack) whose arrays are all borrowed."""
    if not _holds_arrays(view):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return _borrow(context, builder, signature.args[0], args[0])

    return view(view), codegen


borrowed: Any = intrinsic(_borrowed_impl)


def _prefetch_impl(typingctx: Any, array: Any, index: Any) -> Any:
    """Ask the CPU to bring the cache line of ``array[index]`` (1-d, C) into its caches."""
    if not isinstance(array, types.Array):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty, idxty = signature.args
        ary = make_array(aryty)(context, builder, args[0])
        idx = context.cast(builder, args[1], idxty, types.intp)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [idx])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # read, locality 3 (keep in every level), data cache
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen


prefetch: Any = intrinsic(_prefetch_impl)
