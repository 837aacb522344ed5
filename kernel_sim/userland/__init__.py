"""The guest userland: sh, the commands and init, written against the system calls of kern/sysapi.py.

Nothing here reaches into the kernel's objects: every program gets a `Sys` (one process's view of the
kernel) and does what a FreeBSD program does with syscalls.
"""
