/*
 * Shared definitions of the synthetic kernel's early boot (guest side).
 * The Python side mirrors the layouts below in kernel_sim/guest/abi.py; keep both in step.
 */
#ifndef ARMBOARD_H
#define ARMBOARD_H

#define KERNVIRTADDR	0xC0000000u	/* sys/arm/include/vmparam.h */
#define KERNBASE	KERNVIRTADDR
#define PAGE_SIZE	4096u
#define PAGE_MASK	(PAGE_SIZE - 1)
#define PTE1_SIZE	0x00100000u	/* 1 MiB section */
#define NPT2_IN_PG	4		/* sys/arm/include/pmap_var.h: 4 L2 tables per page */
#define NB_IN_PT2TAB_PG	(NPT2_IN_PG * PTE1_SIZE)	/* 4 MiB of KVA per PT2 page */
#define NPG_IN_PT1	4		/* 16 KiB L1 table */
#define PT2MAP		(KERNBASE - 0x00400000u)	/* sys/arm/include/pmap_var.h */
#define DEVMAP_TOP	0xFFF00000u	/* ARM_VECTORS_HIGH & ~PTE1_OFFSET: devmap grows down */

/* Descriptor bits (ARMv7 short descriptors; names as sys/arm/include/pte-v6.h). */
#define PTE1_LINK	0x00000001u
#define PTE1_V		0x00000002u
#define PTE1_A		0x00000400u	/* AP[0], the access flag with SCTLR.AFE */
#define PTE1_KERN	(PTE1_V | PTE1_A)	/* 0x402: locore's sections, TEX class 0 */
#define PTE2_NX		0x00000001u
#define PTE2_V		0x00000002u
#define PTE2_A		0x00000010u	/* AP[0] */
#define PTE2_KERN	(PTE2_V | PTE2_A)

/* SCTLR bits set by init_mmu (sys/arm/arm/locore-v6.S). */
#define CPU_CONTROL_MMU_ENABLE	(1u << 0)
#define CPU_CONTROL_TR_ENABLE	(1u << 28)	/* TEX remap */
#define CPU_CONTROL_AF_ENABLE	(1u << 29)	/* access flag */

/* The preload metadata (sys/sys/linker.h, sys/arm/include/metadata.h). */
#define MODINFO_END		0x0000
#define MODINFO_NAME		0x0001
#define MODINFO_TYPE		0x0002
#define MODINFO_ADDR		0x0003
#define MODINFO_SIZE		0x0004
#define MODINFO_METADATA	0x8000
#define MODINFOMD_ENVP		0x0006
#define MODINFOMD_HOWTO		0x0007
#define MODINFOMD_KERNEND	0x0008
#define MODINFOMD_DTBP		0x1002
#define MODINFOMD_NOCOPY	0x8000

/* Hypercalls: `svc #HYPERCALL_IMM` with the call number in r7 and the argument in r0. */
#define HYPERCALL_IMM		0x0AB0AB
#define HC_HANDOVER		1	/* r0 = struct handoff * : enter the Python kernel (mi_startup) */
#define HC_PANIC		2	/* r0 = panic message */
#define HC_FATAL		3	/* r0 = struct fatal_report * */
#define SEMIHOSTING_IMM		0x123456
#define SYS_EXIT		0x18
#define ADP_Stopped_ApplicationExit	0x20026
#define ADP_Stopped_RunTimeErrorUnknown	0x20023

#define ARMBOARD_CONFIG_MAGIC	0x46434241u	/* "ABCF" */
#define ARMBOARD_CONFIG_VERSION	1
#define MAX_MODULES		16

#ifndef __ASSEMBLER__
#include <stdint.h>

typedef uint32_t u32;

/*
 * Values the configure step writes into the kernel image (section .armboard_config) so that
 * changing an option never needs a compiler.
 */
struct armboard_config {
	u32 magic;
	u32 version;
	u32 locore_map_mb;	/* LOCORE_MAP_MB */
	u32 nkpt2pg;		/* NKPT2PG */
	u32 invariants;		/* options INVARIANTS */
	u32 kernel_end;		/* VA of the end of the kernel footprint (fake metadata) */
	u32 uart_pa;		/* console PL011, physical */
	u32 uart_devmap_va;	/* where pmap_bootstrap maps it */
	u32 reserved[8];
};

struct module_info {
	u32 name;		/* VA of the name string inside the metadata */
	u32 type;		/* VA of the type string */
	u32 addr;
	u32 size;
};

/* What initarm and pmap_bootstrap found and built: read by the Python kernel at hand-over. */
struct handoff {
	u32 version;
	u32 abi;		/* 1 FreeBSD (r0 = metadata), 2 Linux (r2 = DTB), 3 none (fake) */
	u32 boot_r0, boot_r1, boot_r2, boot_r3;
	u32 physaddr;		/* 1 MiB-aligned load address (locore's r5) */
	u32 boot_pt1;		/* PA of locore's L1 */
	u32 metadata;		/* VA of the metadata actually used */
	u32 kernend;		/* VA: end of kernel + modules + metadata */
	u32 envp;
	u32 howto;
	u32 dtbp;
	u32 kern_pt1;		/* PA */
	u32 kern_pt2tab;	/* PA */
	u32 pt2pg_pa;		/* PA of the first of the NKPT2PG pages */
	u32 nkpt2pg;
	u32 kernel_vm_end;	/* KERNBASE + NKPT2PG * 4 MiB */
	u32 mapped_end;		/* VA end of the 4 KiB kernel mapping */
	u32 first_free_pa;	/* first physical page after the boot page tables */
	u32 extra_pt2pg;	/* PT2 pages allocated beyond NKPT2PG (no INVARIANTS) */
	u32 devmap_va;		/* lowest device mapping: vm_max_kernel_address */
	u32 uart_va;
	u32 nmodules;
	struct module_info modules[MAX_MODULES];
};

struct trapframe {
	u32 tf_spsr;
	u32 tf_r[13];
	u32 tf_svc_sp;
	u32 tf_svc_lr;
	u32 tf_pc;
};

/* Handed to the board with HC_FATAL after the report is printed. */
struct fatal_report {
	u32 kind;		/* 1 data abort, 2 prefetch abort, 3 undefined instruction, 4 svc */
	u32 fsr;
	u32 far;
	u32 tf;			/* VA of the trapframe */
};

extern struct armboard_config armboard_config;

/* console.c */
void cons_init(u32 uart_va);
void cons_putc(int c);
int printf(const char *fmt, ...);
int snprintf(char *buf, u32 size, const char *fmt, ...);
void panic(const char *fmt, ...) __attribute__((noreturn));
void hypercall(u32 nr, u32 arg);
void halt(void) __attribute__((noreturn));
void semihost_exit(u32 reason) __attribute__((noreturn));

/* initarm.c / pmap.c / trap.c */
void initarm(u32 r0, u32 r1, u32 r2, u32 r3, u32 physaddr, u32 boot_pt1);
void pmap_bootstrap(struct handoff *h);
void trap_fatal(struct trapframe *tf, u32 kind);

/* Helpers from locore.S */
u32 cp15_dfsr_get(void);
u32 cp15_dfar_get(void);
u32 cp15_ifsr_get(void);
u32 cp15_ifar_get(void);
void cp15_ttbr_set(u32 ttbr);
void tlb_flush_all(void);
#endif /* !__ASSEMBLER__ */
#endif /* ARMBOARD_H */
