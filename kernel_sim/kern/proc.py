"""Processes and their kernel stacks (sys/vm/vm_glue.c vm_thread_new, sys/kern/kern_fork.c).

Every thread's kernel stack is KSTACK_PAGES pages of real guest memory, mapped in the guest's own
page tables, below one unmapped guard page, all from kernel_arena's KVA. When the KVA runs out the
kernel says what FreeBSD 11.3 says and fork fails with ENOMEM.
"""

from __future__ import annotations

from kernel_sim.guest.abi import KSTACK_GUARD_PAGES, KSTACK_PAGES, PAGE_SIZE
from kernel_sim.vm.kva_layout import kernel_arena_alloc
from kernel_sim.vm.phys import OutOfPages, PhysAllocator
from kernel_sim.vm.pmap import KernelPmap
from kernel_sim.vm.vmem import Vmem, VmemExhausted

TYPE_CHECKING = False   # typing costs an import on every boot; annotations are strings here
if TYPE_CHECKING:
    from collections.abc import Callable

ENOMEM = 12             # sys/sys/errno.h


class Thread:
    __slots__ = ("tid", "kstack", "pages")

    def __init__(self, tid: int, kstack: int, pages: list[int]) -> None:
        self.tid = tid
        self.kstack = kstack  # VA of the lowest mapped page (the guard page sits just below)
        self.pages = pages  # physical pages of the stack

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"


class Proc:
    __slots__ = ("pid", "comm", "threads", "uid")

    def __init__(self, pid: int, comm: str, threads: list[Thread] | None = None, uid: int = 0) -> None:
        self.pid = pid
        self.comm = comm
        self.threads = [] if threads is None else threads
        self.uid = uid  # p_ucred->cr_uid (root unless a spawn says otherwise)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"


class KstackFailure(Exception):
    """fork1() returning ENOMEM because vm_thread_new could not get a kernel stack."""

    def __init__(self, reason: str, requested: int, free: int, largest: int) -> None:
        super().__init__(reason)
        self.reason = reason          # "kva" or "pages"
        self.requested = requested
        self.free = free
        self.largest = largest
        self.errno = ENOMEM


class ProcTable:
    """proc0/thread0 from the boot, then every fork."""

    def __init__(self, kernel_map: Vmem, arena: Vmem, pmap: KernelPmap, pages: PhysAllocator,
                 printf: Callable[[str], None], thread0_kstack: int) -> None:
        self.kernel_map = kernel_map
        self.arena = arena
        self.pmap = pmap
        self.pages = pages
        self.printf = printf
        self.procs: dict[int, Proc] = {}
        self.next_pid = 1
        self.next_tid = 100000   # FreeBSD's first tid (sys/kern/kern_thread.c: tid_min... NO_PID + 1)
        proc0 = Proc(0, "kernel", [Thread(self.next_tid, thread0_kstack, [])])
        self.next_tid += 1
        self.procs[0] = proc0
        self.kstacks_allocated = 0
        # EVENTHANDLER(9)'s process_fork (proc, parent pid) and process_exit (proc) lists, as FreeBSD's
        # kern_fork.c and kern_exit.c invoke them: the boot timeline hears each command this way.
        self.eventhandlers: dict[str, list[Callable]] = {"process_fork": [], "process_exit": []}

    def vm_thread_new(self) -> Thread:
        """Map a kernel stack: KVA for the stack and its guard page, then the stack's pages."""
        size = (KSTACK_PAGES + KSTACK_GUARD_PAGES) * PAGE_SIZE
        try:
            kva = kernel_arena_alloc(self.kernel_map, self.arena, size, "kstack")
        except VmemExhausted:
            self.printf("vm_thread_new: kstack allocation failed\n")   # sys/vm/vm_glue.c [11.3]
            raise KstackFailure("kva", size, self.arena.free_total + self.kernel_map.free_total,
                                max(self.arena.largest_free, self.kernel_map.largest_free)) from None
        try:
            pas = self.pages.alloc(KSTACK_PAGES, zero=True)
        except OutOfPages:
            self.arena.free(kva, size)
            self.printf("vm_thread_new: kstack allocation failed\n")
            raise KstackFailure("pages", KSTACK_PAGES * PAGE_SIZE, self.pages.free_count * PAGE_SIZE, 0) from None
        stack = kva + KSTACK_GUARD_PAGES * PAGE_SIZE      # the guard page stays unmapped
        self.pmap.kenter_range(stack, pas)
        self.kstacks_allocated += 1
        thread = Thread(self.next_tid, stack, pas)
        self.next_tid += 1
        return thread

    def fork(self, parent: int, comm: str) -> Proc:
        """fork1(): a new process with one thread; KstackFailure (ENOMEM) when no stack can be had."""
        if parent not in self.procs:
            raise ValueError(f"no process {parent}")
        thread = self.vm_thread_new()
        proc = Proc(self.next_pid, comm, [thread])
        self.next_pid += 1
        self.procs[proc.pid] = proc
        for handler in self.eventhandlers["process_fork"]:
            handler(proc, parent)
        return proc

    def exit(self, pid: int) -> None:
        """exit1() and the reaping that follows: every thread's stack unmapped (vm_thread_dispose),
        its pages freed and its KVA, guard page included, returned to kernel_arena."""
        if pid == 0:
            raise ValueError("proc0 never exits")
        proc = self.procs.pop(pid, None)
        if proc is None:
            raise ValueError(f"no process {pid}")
        for handler in self.eventhandlers["process_exit"]:
            handler(proc)
        for thread in proc.threads:
            if not thread.pages:
                continue
            self.pmap.kremove_range(thread.kstack, KSTACK_PAGES * PAGE_SIZE)
            for pa in thread.pages:
                self.pages.free(pa)
            kva = thread.kstack - KSTACK_GUARD_PAGES * PAGE_SIZE
            self.arena.free(kva, (KSTACK_PAGES + KSTACK_GUARD_PAGES) * PAGE_SIZE)
            self.kstacks_allocated -= 1
        proc.threads.clear()

    @property
    def kstack_kva(self) -> int:
        return self.kstacks_allocated * (KSTACK_PAGES + KSTACK_GUARD_PAGES) * PAGE_SIZE
