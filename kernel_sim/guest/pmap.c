/*
 * pmap_bootstrap: the kernel's own page tables, as sys/arm/arm/pmap-v6.c
 * pmap_bootstrap_prepare() builds them: after the kernel end (rounded up to 1 MiB) the L1
 * table (4 pages), PT2TAB (1 page) and NKPT2PG pages of L2 tables linked from KERNBASE,
 * PT2MAP at KERNBASE - 4 MiB, the kernel range mapped with 4 KiB pages, the console
 * device mapped below the high vectors, then the switch from boot_pt1 to kern_pt1.
 * New tables are written through locore's identity map (VA = PA).
 */
#include "armboard.h"

static u32 boot_next_pa;	/* pmap_preboot_get_pages() cursor */
static u32 *kern_pt1;
static u32 *kern_pt2tab;
static u32 extra_pt2pg;

static u32
preboot_get_pages(u32 count)
{
	u32 pa = boot_next_pa;
	u32 *p = (u32 *)pa;

	for (u32 i = 0; i < count * PAGE_SIZE / 4; i++)
		p[i] = 0;
	boot_next_pa += count * PAGE_SIZE;
	return pa;
}

/* Link one PT2 page (4 L2 tables) for the 4 MiB at va: PT2TAB entry and four L1 links. */
static void
link_pt2pg(u32 va, u32 pt2pg_pa)
{
	u32 l1 = (va >> 20) & ~3u;

	kern_pt2tab[va >> 22] = pt2pg_pa | PTE2_KERN | PTE2_NX;
	for (u32 j = 0; j < NPT2_IN_PG; j++)
		kern_pt1[l1 + j] = (pt2pg_pa + j * 1024) | PTE1_LINK;
}

/* pmap_preboot_pt2pg_setup(): the PT2 page for va, allocated only above the kernel map. */
static u32
preboot_pt2pg_setup(u32 va)
{
	u32 pte2 = kern_pt2tab[va >> 22];

	if (pte2 & PTE2_V)
		return pte2 & ~PAGE_MASK;
	if (armboard_config.invariants && va < armboard_config.uart_devmap_va)
		panic("pmap_preboot_pt2pg_setup: NKPT2PG too small");	/* KASSERT */
	u32 pa = preboot_get_pages(1);
	link_pt2pg(va, pa);
	extra_pt2pg++;
	return pa;
}

void
pmap_bootstrap(struct handoff *h)
{
	u32 kernload = h->physaddr;
	u32 nkpt2pg = armboard_config.nkpt2pg;
	u32 last_pa = h->kernend - KERNVIRTADDR + kernload;
	u32 va;

	boot_next_pa = (last_pa + PTE1_SIZE - 1) & ~(PTE1_SIZE - 1);
	kern_pt1 = (u32 *)preboot_get_pages(NPG_IN_PT1);
	kern_pt2tab = (u32 *)preboot_get_pages(1);
	h->pt2pg_pa = preboot_get_pages(nkpt2pg);
	for (u32 i = 0; i < nkpt2pg; i++)
		link_pt2pg(KERNBASE + i * NB_IN_PT2TAB_PG, h->pt2pg_pa + i * PAGE_SIZE);
	printf("pmap_bootstrap: kern_pt1 0x%08x, PT2TAB 0x%08x, NKPT2PG=%u covers 0x%08x-0x%08x\n",
	    (u32)kern_pt1, (u32)kern_pt2tab, nkpt2pg, KERNBASE,
	    KERNBASE + nkpt2pg * NB_IN_PT2TAB_PG);

	/* PT2MAP: the PT2TAB page serves as the L2 tables of the PT2MAP window itself. */
	for (u32 j = 0; j < NPT2_IN_PG; j++)
		kern_pt1[(PT2MAP >> 20) + j] = ((u32)kern_pt2tab + j * 1024) | PTE1_LINK;
	kern_pt2tab[PT2MAP >> 22] = (u32)kern_pt2tab | PTE2_KERN | PTE2_NX;

	/* The kernel, its modules and the metadata, page by page. */
	h->mapped_end = (h->kernend + PAGE_MASK) & ~PAGE_MASK;
	for (va = KERNBASE; va < h->mapped_end; ) {
		/* One PT2 page per 4 MiB, then a tight loop over its entries. */
		u32 *pt2pg = (u32 *)preboot_pt2pg_setup(va);
		u32 chunk_end = (va | (NB_IN_PT2TAB_PG - 1)) + 1;
		u32 end = chunk_end < h->mapped_end ? chunk_end : h->mapped_end;
		u32 pte2 = (va - KERNBASE + kernload) | PTE2_KERN;
		for (; va < end; va += PAGE_SIZE, pte2 += PAGE_SIZE)
			pt2pg[(va >> 12) & 0x3FF] = pte2;
	}

	/* The console's registers: one device section below the high vectors. */
	kern_pt1[armboard_config.uart_devmap_va >> 20] =
	    (armboard_config.uart_pa & ~(PTE1_SIZE - 1)) | PTE1_KERN;

	h->kern_pt1 = (u32)kern_pt1;
	h->kern_pt2tab = (u32)kern_pt2tab;
	h->nkpt2pg = nkpt2pg;
	h->kernel_vm_end = KERNBASE + nkpt2pg * NB_IN_PT2TAB_PG;
	h->extra_pt2pg = extra_pt2pg;
	h->first_free_pa = boot_next_pa;
	h->devmap_va = armboard_config.uart_devmap_va;
	h->uart_va = armboard_config.uart_devmap_va | (armboard_config.uart_pa & (PTE1_SIZE - 1));

	cp15_ttbr_set((u32)kern_pt1);
	cons_init(h->uart_va);
	printf("pmap_bootstrap: 0x%08x-0x%08x mapped with %u 4 KiB pages; switched to kern_pt1\n",
	    KERNBASE, h->mapped_end, (h->mapped_end - KERNBASE) / PAGE_SIZE);
}
