/* Bare-metal probe of the virt board's first CFI flash bank: print the query table, the IDs, the
 * status register and a read-array word, one 32-bit hex word per line, then exit through
 * semihosting. Run on armboard and on qemu-system-arm; the outputs must match. */
	.syntax	unified
	.arm
	.global	_start
_start:
	ldr	sp, =0x40100000
	ldr	r1, =0x00000000		/* flash bank 0 */
	mov	r2, #0x98		/* CFI query */
	str	r2, [r1]
	mov	r4, #0
1:	ldr	r5, [r1, r4, lsl #2]
	bl	puthex
	add	r4, r4, #1
	cmp	r4, #0x40
	blt	1b
	mov	r2, #0xFF		/* read array first: QEMU takes no new command in query mode */
	str	r2, [r1]
	mov	r2, #0x90		/* read identifier */
	str	r2, [r1]
	ldr	r5, [r1]
	bl	puthex
	ldr	r5, [r1, #4]
	bl	puthex
	mov	r2, #0xFF
	str	r2, [r1]
	mov	r2, #0x70		/* read status */
	str	r2, [r1]
	ldr	r5, [r1]
	bl	puthex
	mov	r2, #0xFF		/* read array */
	str	r2, [r1]
	ldr	r2, =0x02000000		/* an untouched word of the array */
	ldr	r5, [r1, r2]
	bl	puthex
	mov	r0, #0x18		/* SYS_EXIT, ADP_Stopped_ApplicationExit */
	ldr	r1, =0x20026
	svc	#0x123456

/* r5 -> eight hex digits and a newline on the PL011 */
puthex:
	ldr	r6, =0x09000000
	mov	r7, #28
2:	lsr	r8, r5, r7
	and	r8, r8, #0xF
	cmp	r8, #10
	addlo	r8, r8, #0x30
	addhs	r8, r8, #0x57
	str	r8, [r6]
	subs	r7, r7, #4
	bpl	2b
	mov	r8, #0x0A
	str	r8, [r6]
	bx	lr
	.ltorg
