"""The guest kernel's symbols as a sorted table: `name+0xoff` for any address the CPU runs at.

Why beside GuestImage.symbol_at: a trace names every instruction, so a lookup must be a bisection,
not a scan of the whole symbol dict; and before the MMU is on the CPU runs the kernel at its physical
addresses, which the table maps back to the virtual address the symbols are given at.
"""

from __future__ import annotations

from bisect import bisect_right

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kernel_sim.guest.build import GuestImage

# As GuestImage.symbol_at: an address further than this past the nearest symbol belongs to none.
MAX_OFFSET = 0x10000


class SymbolTable:
    """Symbols by address. For several names at one address the first one the ELF lists wins, as in
    GuestImage.symbol_at."""

    def __init__(self, image: GuestImage) -> None:
        first: dict[int, str] = {}
        for name, address in image.symbols.items():
            first.setdefault(address, name)
        self.addresses = sorted(first)
        self.names = [first[a] for a in self.addresses]
        # (paddr, vaddr, size) of each loaded segment whose two addresses differ
        self.aliases = [(s.paddr, s.vaddr, s.memsz) for s in image.segments if s.paddr != s.vaddr]
        self.vranges = [(s.vaddr, s.vaddr + s.memsz) for s in image.segments]

    def virtual(self, address: int) -> int:
        """The kernel VA of an address the CPU may run at physically (MMU off); others unchanged."""
        if any(lo <= address < hi for lo, hi in self.vranges):
            return address
        for paddr, vaddr, size in self.aliases:
            if paddr <= address < paddr + size:
                return address - paddr + vaddr
        return address

    def lookup(self, address: int) -> tuple[str, int] | None:
        """(name, offset) of the symbol holding `address`, or None."""
        va = self.virtual(address)
        i = bisect_right(self.addresses, va) - 1
        if i < 0 or va - self.addresses[i] > MAX_OFFSET:
            return None
        return self.names[i], va - self.addresses[i]

    def describe(self, address: int) -> str | None:
        """'name' or 'name+0xoff'."""
        found = self.lookup(address)
        if found is None:
            return None
        name, off = found
        return name if off == 0 else f"{name}+0x{off:x}"
