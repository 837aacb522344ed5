/*
 * initarm: find the preload metadata the way sys/arm/arm/machdep_boot.c does, walking the
 * MODINFO records through their virtual addresses (inside locore's LOCORE_MAP_MB window),
 * then run pmap_bootstrap and hand over to the Python kernel.
 */
#include "armboard.h"

/* Placed by the linker in its own section; the configure step overwrites the values. */
__attribute__((section(".armboard_config"), used))
struct armboard_config armboard_config = {
	.magic = ARMBOARD_CONFIG_MAGIC,
	.version = ARMBOARD_CONFIG_VERSION,
	.locore_map_mb = 64,		/* sys/arm/arm/locore-v6.S */
	.nkpt2pg = 32,			/* sys/arm/include/pmap-v6.h */
	.invariants = 1,
	.kernel_end = 0,
	.uart_pa = 0x09000000,
	.uart_devmap_va = 0xFFE00000,
};

extern char _end[];

static struct handoff handoff;

/* fake_preload_metadata(): what a kernel booted without a FreeBSD loader describes itself with. */
static u32 fake_preload[64];

static u32
fake_record(u32 i, u32 type, const void *data, u32 size)
{
	fake_preload[i++] = type;
	fake_preload[i++] = size;
	const char *src = data;
	char *dst = (char *)&fake_preload[i];
	for (u32 k = 0; k < size; k++)
		dst[k] = src[k];
	return i + (size + 3) / 4;
}

static u32
fake_preload_metadata(u32 dtbp)
{
	u32 kernend = armboard_config.kernel_end ? armboard_config.kernel_end : (u32)_end;
	u32 addr = KERNVIRTADDR, size = kernend - KERNVIRTADDR;
	u32 i = 0;

	kernend = (kernend + PAGE_MASK) & ~PAGE_MASK;
	i = fake_record(i, MODINFO_NAME, "kernel", 7);
	i = fake_record(i, MODINFO_TYPE, "elf kernel", 11);
	i = fake_record(i, MODINFO_ADDR, &addr, 4);
	i = fake_record(i, MODINFO_SIZE, &size, 4);
	if (dtbp != 0)
		i = fake_record(i, MODINFO_METADATA | MODINFOMD_DTBP, &dtbp, 4);
	i = fake_record(i, MODINFO_METADATA | MODINFOMD_KERNEND, &kernend, 4);
	fake_preload[i++] = MODINFO_END;
	fake_preload[i++] = 0;
	return (u32)fake_preload;
}

static int
streq(const char *a, const char *b)
{
	while (*a != '\0' && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

/*
 * Walk the records (sys/kern/subr_module.c: u32 type, u32 size, data; the next record at
 * roundup(8 + size, 4)). Returns 1 when an "elf kernel" module was found.
 */
#define MAX_RECORDS 4096
static int
parse_metadata(u32 mdp, struct handoff *h)
{
	const u32 *rec = (const u32 *)mdp;
	struct module_info *cur = 0;
	int kernel_found = 0, in_kernel = 0;

	h->nmodules = 0;
	for (int n = 0; n < MAX_RECORDS; n++) {
		u32 type = rec[0], size = rec[1];
		const u32 *data = rec + 2;

		if (type == MODINFO_END)
			break;
		if (size > 0x10000)
			return 0;			/* not metadata */
		switch (type) {
		case MODINFO_NAME:
			cur = h->nmodules < MAX_MODULES ? &h->modules[h->nmodules++] : 0;
			if (cur != 0) {
				cur->name = (u32)data;
				cur->type = cur->addr = cur->size = 0;
			}
			in_kernel = 0;
			break;
		case MODINFO_TYPE:
			if (cur != 0)
				cur->type = (u32)data;
			in_kernel = streq((const char *)data, "elf kernel");
			kernel_found |= in_kernel;
			break;
		case MODINFO_ADDR:
			if (cur != 0)
				cur->addr = data[0];
			break;
		case MODINFO_SIZE:
			if (cur != 0)
				cur->size = data[0];
			break;
		case MODINFO_METADATA | MODINFOMD_KERNEND:
			if (in_kernel)
				h->kernend = data[0];
			break;
		case MODINFO_METADATA | MODINFOMD_ENVP:
			if (in_kernel)
				h->envp = data[0];
			break;
		case MODINFO_METADATA | MODINFOMD_HOWTO:
			if (in_kernel)
				h->howto = data[0];
			break;
		case MODINFO_METADATA | MODINFOMD_DTBP:
			if (in_kernel)
				h->dtbp = data[0];
			break;
		default:
			break;
		}
		rec = (const u32 *)((u32)rec + ((8 + size + 3) & ~3u));
	}
	return kernel_found && h->kernend != 0;
}

/* kern_getenv(9) over the loader's environment: "name=value" strings, an empty one ends them. */
static const char *
kern_getenv(const struct handoff *h, const char *name)
{
	const char *p = (const char *)h->envp;

	if (p == 0)
		return 0;
	while (*p != '\0') {
		const char *n = name, *q = p;
		while (*n != '\0' && *q == *n) {
			n++;
			q++;
		}
		if (*n == '\0' && *q == '=')
			return q + 1;
		while (*p != '\0')
			p++;
		p++;
	}
	return 0;
}

static u32
parse_u32(const char *s)
{
	u32 v = 0, base = 10;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	for (; *s != '\0'; s++) {
		u32 d;
		if (*s >= '0' && *s <= '9')
			d = (u32)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = (u32)(*s - 'a' + 10);
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = (u32)(*s - 'A' + 10);
		else
			break;
		v = v * base + d;
	}
	return v;
}

/* Tunable debug.wild_access=ADDR: read ADDR once, to watch an abort reach the guest's vector. */
static void __attribute__((noinline))
debug_wild_access(const struct handoff *h)
{
	const char *value = kern_getenv(h, "debug.wild_access");

	if (value == 0)
		return;
	u32 va = parse_u32(value);
	printf("initarm: debug.wild_access: reading 0x%08x\n", va);
	printf("initarm: read 0x%08x\n", *(volatile const u32 *)va);
}

void
initarm(u32 r0, u32 r1, u32 r2, u32 r3, u32 physaddr, u32 boot_pt1)
{
	struct handoff *h = &handoff;
	u32 mdp;

	cons_init(armboard_config.uart_pa);	/* identity-mapped by locore */
	printf("locore: boot_pt1 at 0x%08x: 4096 identity sections, "
	    "KERNVIRTADDR 0x%08x -> 0x%08x for LOCORE_MAP_MB=%u MiB; MMU on\n",
	    boot_pt1, KERNVIRTADDR, physaddr, armboard_config.locore_map_mb);

	h->version = 1;
	h->boot_r0 = r0;
	h->boot_r1 = r1;
	h->boot_r2 = r2;
	h->boot_r3 = r3;
	h->physaddr = physaddr;
	h->boot_pt1 = boot_pt1;

	/* machdep_boot.c: linux_parse_boot_param, freebsd_parse_boot_param, fake_preload_metadata. */
	if (r0 == 0 && r2 != 0) {
		h->abi = 2;
		printf("initarm: Linux boot ABI, DTB at 0x%08x; using fake metadata\n", r2);
		mdp = fake_preload_metadata(r2);
		parse_metadata(mdp, h);
	} else if (r0 != 0) {
		h->abi = 1;
		mdp = r0 & ~PAGE_MASK;
		printf("initarm: FreeBSD boot ABI, metadata at 0x%08x\n", mdp);
		if (!parse_metadata(mdp, h)) {
			printf("initarm: no kernel in the metadata at 0x%08x; using fake metadata\n", mdp);
			mdp = fake_preload_metadata(0);
			parse_metadata(mdp, h);
		}
	} else {
		h->abi = 3;
		printf("initarm: no boot parameters; using fake metadata\n");
		mdp = fake_preload_metadata(0);
		parse_metadata(mdp, h);
	}
	h->metadata = mdp;
	for (u32 i = 0; i < h->nmodules; i++) {
		const struct module_info *m = &h->modules[i];
		printf("initarm: module \"%s\" (%s) at 0x%08x, %u bytes\n",
		    (const char *)m->name, m->type ? (const char *)m->type : "?", m->addr, m->size);
	}
	printf("initarm: kernel end 0x%08x\n", h->kernend);

	pmap_bootstrap(h);
	debug_wild_access(h);

	printf("initarm: hand-over to mi_startup\n");
	hypercall(HC_HANDOVER, (u32)h);
	panic("main() returned");
}
