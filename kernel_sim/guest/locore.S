/*
 * locore: the first code the board runs, at the physical load address with the MMU off.
 * Modelled on sys/arm/arm/locore-v6.S: identity-map all 4 GB with sections, map
 * KERNVIRTADDR..+LOCORE_MAP_MB MiB to the 1 MiB-aligned load address, turn the MMU on and
 * continue at the kernel's virtual addresses. Also the exception vectors.
 */
	.file	"locore.S"
#include "armboard.h"

	.syntax	unified
	.arm
	.section .text.locore, "ax"
	.globl	_start
_start:
	/* Keep the boot registers (FreeBSD ABI r0 = metadata; Linux ABI r0 = 0, r1 = machine, r2 = DTB). */
	mov	r8, r0
	mov	r9, r1
	mov	r10, r2
	mov	r11, r3
	cpsid	aif
	mrc	p15, 0, r0, c1, c0, 0		/* make sure the MMU and caches are off */
	bic	r0, r0, #CPU_CONTROL_MMU_ENABLE
	mcr	p15, 0, r0, c1, c0, 0
	isb

	/* r4 = physical address of _start, r5 = pc & ~0xFFFFF (the 1 MiB-aligned load address). */
	adr	r4, _start
	lsr	r5, r4, #20
	lsl	r5, r5, #20

	/* r6 = PA of boot_pt1, r7 = LOCORE_MAP_MB (read through its physical address). */
	ldr	r6, =boot_pt1
	ldr	r0, =_start
	sub	r6, r6, r0
	add	r6, r6, r4
	ldr	r7, =armboard_config + 8	/* locore_map_mb */
	sub	r7, r7, r0
	add	r7, r7, r4
	ldr	r7, [r7]

	/* build_pagetables: VA = PA for all 4096 sections. */
build_pagetables:			/* a label for the boot timeline and traces (locore-v6.S names it so) */
	mov	r1, #0
	ldr	r3, =PTE1_KERN
1:	orr	r2, r3, r1, lsl #20
	str	r2, [r6, r1, lsl #2]
	add	r1, r1, #1
	cmp	r1, #4096
	bne	1b

	/* The kernel window: KERNVIRTADDR + i MiB -> r5 + i MiB, i < LOCORE_MAP_MB. */
	mov	r1, #(KERNVIRTADDR >> 20)
	add	r12, r1, r7
	cmp	r12, #4096			/* never past the top of the address space */
	movhi	r12, #4096
	mov	r2, r5
2:	cmp	r1, r12
	bhs	3f
	orr	r0, r2, r3
	str	r0, [r6, r1, lsl #2]
	add	r1, r1, #1
	add	r2, r2, #PTE1_SIZE
	b	2b
3:
	/* init_mmu: TTBR0, TTBCR, DACR (all domains client), TEX remap (PRRR/NMRR), AFE and TRE. */
init_mmu:
	mcr	p15, 0, r6, c2, c0, 0		/* TTBR0 */
	mov	r0, #0
	mcr	p15, 0, r0, c2, c0, 2		/* TTBCR */
	ldr	r0, =0x55555555
	mcr	p15, 0, r0, c3, c0, 0		/* DACR */
	ldr	r0, =0x000AAAAA			/* PRRR as init_mmu sets it */
	mcr	p15, 0, r0, c10, c2, 0
	mov	r0, #0				/* NMRR */
	mcr	p15, 0, r0, c10, c2, 1
	ldr	r0, =exception_vectors		/* VBAR: the vectors at their virtual address */
	mcr	p15, 0, r0, c12, c0, 0
	mov	r0, #0
	mcr	p15, 0, r0, c8, c7, 0		/* TLBIALL */
	dsb
	isb
	mrc	p15, 0, r0, c1, c0, 0
	orr	r0, r0, #CPU_CONTROL_MMU_ENABLE
	orr	r0, r0, #CPU_CONTROL_TR_ENABLE
	orr	r0, r0, #CPU_CONTROL_AF_ENABLE
	bic	r0, r0, #(1 << 13)		/* SCTLR.V = 0: vectors at VBAR */
	mcr	p15, 0, r0, c1, c0, 0
	isb
	ldr	pc, =virtdone			/* jump to the kernel's virtual addresses */

virtdone:
	/* Stacks: one per exception mode, then SVC. */
	cps	#0x17				/* ABT */
	ldr	sp, =abt_stack_top
	cps	#0x1b				/* UND */
	ldr	sp, =und_stack_top
	cps	#0x12				/* IRQ */
	ldr	sp, =irq_stack_top
	cps	#0x13				/* SVC */
	ldr	sp, =svc_stack_top

	/* Clear .bss (QEMU and the loader already do; a real loader might not). */
	ldr	r0, =__bss_start
	ldr	r1, =__bss_end
	mov	r2, #0
4:	cmp	r0, r1
	strlo	r2, [r0], #4
	blo	4b

	/* initarm(r0, r1, r2, r3, physaddr, boot_pt1) */
	mov	r0, r8
	mov	r1, r9
	mov	r2, r10
	mov	r3, r11
	push	{r5, r6}
	bl	initarm
	/* initarm hands over to the Python kernel and never returns. */
	ldr	r0, =main_returned
	bl	panic

main_returned:
	.asciz	"main() returned"
	.balign	4
	.ltorg

/* ---------------------------------------------------------------- exception vectors */
	.balign	32
	.globl	exception_vectors
exception_vectors:
	ldr	pc, =vec_reset
	ldr	pc, =vec_undefined
	ldr	pc, =vec_svc
	ldr	pc, =vec_prefetch_abort
	ldr	pc, =vec_data_abort
	ldr	pc, =vec_reserved
	ldr	pc, =vec_irq
	ldr	pc, =vec_fiq
	.ltorg

/*
 * Build a struct trapframe on the current mode's stack and call trap_fatal(tf, kind).
 * \adj corrects LR to the faulting instruction; the SVC-mode sp/lr are read by switching mode.
 */
.macro TRAP_ENTRY adj, kind, mode
	sub	lr, lr, #\adj
	sub	sp, sp, #68
	stmib	sp, {r0-r12}
	str	lr, [sp, #64]
	mrs	r0, spsr
	str	r0, [sp]
	mov	r4, sp
	cps	#0x13
	mov	r1, sp
	mov	r2, lr
	cps	#\mode
	str	r1, [r4, #56]
	str	r2, [r4, #60]
	mov	r0, r4
	mov	r1, #\kind
	bl	trap_fatal
	b	.
.endm

vec_undefined:		TRAP_ENTRY 4, 3, 0x1b
vec_prefetch_abort:	TRAP_ENTRY 4, 2, 0x17
vec_data_abort:		TRAP_ENTRY 8, 1, 0x17
vec_svc:
	/* Only reached where no board catches the hypercall gate (real hardware, QEMU). */
	sub	sp, sp, #68
	stmib	sp, {r0-r12}
	sub	r0, lr, #4
	str	r0, [sp, #64]
	mrs	r0, spsr
	str	r0, [sp]
	str	sp, [sp, #56]
	str	lr, [sp, #60]
	mov	r0, sp
	mov	r1, #4
	bl	trap_fatal
	b	.
vec_reset:
vec_reserved:
vec_irq:
vec_fiq:
	TRAP_ENTRY 4, 5, 0x13
	.ltorg

/* ---------------------------------------------------------------- helpers for C */
	.globl	cp15_dfsr_get, cp15_dfar_get, cp15_ifsr_get, cp15_ifar_get, cp15_ttbr_set, tlb_flush_all
	.globl	hypercall, semihost_exit, halt
cp15_dfsr_get:	mrc	p15, 0, r0, c5, c0, 0
		bx	lr
cp15_dfar_get:	mrc	p15, 0, r0, c6, c0, 0
		bx	lr
cp15_ifsr_get:	mrc	p15, 0, r0, c5, c0, 1
		bx	lr
cp15_ifar_get:	mrc	p15, 0, r0, c6, c0, 2
		bx	lr
cp15_ttbr_set:
	dsb
	mcr	p15, 0, r0, c2, c0, 0		/* TTBR0 */
	isb
	/* fall through */
tlb_flush_all:
	mov	r0, #0
	mcr	p15, 0, r0, c8, c7, 0		/* TLBIALL */
	mcr	p15, 0, r0, c7, c5, 6		/* BPIALL */
	dsb
	isb
	bx	lr

/* void hypercall(u32 nr, u32 arg): the gate into the Python kernel. */
hypercall:
	push	{r7, lr}
	mov	r7, r0
	mov	r0, r1
	svc	#HYPERCALL_IMM
	pop	{r7, pc}

/* void semihost_exit(u32 reason): SYS_EXIT, as QEMU does with -semihosting. */
semihost_exit:
	mov	r1, r0
	mov	r0, #SYS_EXIT
	svc	#SEMIHOSTING_IMM
halt:
	wfi
	b	halt

	.ltorg

/* ---------------------------------------------------------------- data */
	.section .bss.boot_pt1, "aw", %nobits
	.balign	16384
	.globl	boot_pt1
boot_pt1:
	.space	16384

	.section .bss.stacks, "aw", %nobits
	.balign	8
	.space	2048
abt_stack_top:
	.space	1024
und_stack_top:
	.space	512
irq_stack_top:
	.space	16384
	.globl	svc_stack_top
svc_stack_top:
