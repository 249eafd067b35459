"""Atomic loads and stores, and the few libc calls compiled waiting needs.

Busy-waiting needs loads the compiler cannot hoist out of the loop and stores it cannot sink,
with ordering that holds on every CPU, not just x86's: ``load_acquire`` and ``store_release``
emit LLVM atomics (on x86-64 plain moves, on aarch64 ``ldar``/``stlr``). A release store of a
barrier counter makes every write before it visible to a rank whose acquire load sees it.
"""

from __future__ import annotations

import ctypes
from typing import Any

from llvmlite import binding, ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_LIBC_CALLS = ("sched_yield", "getppid", "usleep", "clock_gettime")


def _register_libc() -> None:
    """Make the libc calls resolvable by compiled (and cached) code."""
    libc = ctypes.CDLL(None)
    for name in _LIBC_CALLS:
        binding.add_symbol(name, ctypes.cast(getattr(libc, name), ctypes.c_void_p).value)


_register_libc()


def _pointer(context: Any, builder: Any, aryty: Any, array: Any, index: Any, idxty: Any) -> Any:
    ary = context.make_array(aryty)(context, builder, array)
    idx = context.cast(builder, index, idxty, types.intp)
    return cgutils.get_item_pointer(context, builder, aryty, ary, [idx])


def _load_impl(typingctx: Any, array: Any, index: Any) -> Any:
    """``array[index]`` as an acquire load (int64 arrays)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ptr = _pointer(context, builder, signature.args[0], args[0], args[1], signature.args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return array.dtype(array, index), codegen


load_acquire: Any = intrinsic(_load_impl)


def _store_impl(typingctx: Any, array: Any, index: Any, value: Any) -> Any:
    """``array[index] = value`` as a release store (int64 arrays)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty, idxty, valty = signature.args
        ptr = _pointer(context, builder, aryty, args[0], args[1], idxty)
        val = context.cast(builder, args[2], valty, aryty.dtype)
        builder.store_atomic(val, ptr, "release", 8)
        return context.get_dummy_value()

    return types.void(array, index, value), codegen


store_release: Any = intrinsic(_store_impl)


def _call_impl(name: str) -> Any:
    def impl(typingctx: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            fnty = ir.FunctionType(ir.IntType(32), [])
            fn = cgutils.get_or_insert_function(builder.module, fnty, name)
            return builder.sext(builder.call(fn, []), ir.IntType(64))

        return types.int64(), codegen

    return impl


sched_yield: Any = intrinsic(_call_impl("sched_yield"))
getppid: Any = intrinsic(_call_impl("getppid"))


def _usleep_impl(typingctx: Any, micros: Any) -> Any:
    """Sleep ``micros`` microseconds (libc ``usleep``)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(32)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "usleep")
        value = context.cast(builder, args[0], signature.args[0], types.int32)
        builder.call(fn, [value])
        return context.get_dummy_value()

    return types.void(micros), codegen


usleep: Any = intrinsic(_usleep_impl)


def _monotonic_impl(typingctx: Any) -> Any:
    """CLOCK_MONOTONIC in nanoseconds (``clock_gettime`` into a stack timespec)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        i64 = ir.IntType(64)
        spec = cgutils.alloca_once(builder, ir.ArrayType(i64, 2))
        fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(32), ir.IntType(8).as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "clock_gettime")
        clock_monotonic = ir.Constant(ir.IntType(32), 1)
        builder.call(fn, [clock_monotonic, builder.bitcast(spec, ir.IntType(8).as_pointer())])
        zero = ir.Constant(ir.IntType(32), 0)
        sec = builder.load(builder.gep(spec, [zero, zero]))
        nsec = builder.load(builder.gep(spec, [zero, ir.Constant(ir.IntType(32), 1)]))
        return builder.add(builder.mul(sec, ir.Constant(i64, 1_000_000_000)), nsec)

    return types.int64(), codegen


monotonic_ns: Any = intrinsic(_monotonic_impl)


def _ticks_impl(typingctx: Any) -> Any:
    """The CPU's cycle counter (``llvm.readcyclecounter``; 0 where there is none)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.readcyclecounter")
        return builder.call(fn, [])

    return types.int64(), codegen


ticks: Any = intrinsic(_ticks_impl)
