/*
 * Fatal traps during early boot: print FreeBSD's abort_fatal() report
 * (sys/arm/arm/trap-v6.c) and hand the facts to the board for its diagnosis.
 */
#include "armboard.h"

/* FSR status -> description: the aborts[] table of sys/arm/arm/trap-v6.c. */
static const char *const aborts[32] = {
	"Undefined Code (0x000)",
	"Alignment Fault",
	"Debug Event",
	"Access Bit (L1)",
	"Instruction cache maintenance",
	"Translation Fault (L1)",
	"Access Bit (L2)",
	"Translation Fault (L2)",
	"External Abort",
	"Domain Fault (L1)",
	"Undefined Code (0x00A)",
	"Domain Fault (L2)",
	"External Translation Abort (L1)",
	"Permission Fault (L1)",
	"External Translation Abort (L2)",
	"Permission Fault (L2)",
	"TLB Conflict Abort",
	"Undefined Code (0x401)",
	"Undefined Code (0x402)",
	"Undefined Code (0x403)",
	"Undefined Code (0x404)",
	"Undefined Code (0x405)",
	"Asynchronous External Abort",
	"Undefined Code (0x407)",
	"Asynchronous Parity Error on Memory Access",
	"Parity Error on Memory Access",
	"Undefined Code (0x40A)",
	"Undefined Code (0x40B)",
	"Parity Error on Translation (L1)",
	"Undefined Code (0x40D)",
	"Parity Error on Translation (L2)",
	"Undefined Code (0x40F)",
};

#define FSR_WNR		(1u << 11)
#define FSR_LPAE	(1u << 9)

static u32
fsr_index(u32 fsr)
{
	return (fsr & 0xF) | ((fsr >> 6) & 0x10);	/* FS[4] is bit 10 */
}

static void
print_registers(const struct trapframe *tf)
{
	printf("r0 =%08x, r1 =%08x, r2 =%08x, r3 =%08x\n",
	    tf->tf_r[0], tf->tf_r[1], tf->tf_r[2], tf->tf_r[3]);
	printf("r4 =%08x, r5 =%08x, r6 =%08x, r7 =%08x\n",
	    tf->tf_r[4], tf->tf_r[5], tf->tf_r[6], tf->tf_r[7]);
	printf("r8 =%08x, r9 =%08x, r10=%08x, r11=%08x\n",
	    tf->tf_r[8], tf->tf_r[9], tf->tf_r[10], tf->tf_r[11]);
	printf("r12=%08x, ssp=%08x, slr=%08x, pc =%08x\n\n",
	    tf->tf_r[12], tf->tf_svc_sp, tf->tf_svc_lr, tf->tf_pc);
}

static const char *
hypercall_name(u32 nr)
{
	switch (nr) {
	case HC_HANDOVER:
		return "hand-over to the Python kernel";
	case HC_PANIC:
		return "panic report";
	case HC_FATAL:
		return "fatal trap report";
	default:
		return "unknown hypercall";
	}
}

/*
 * An svc reaches the guest's own vector only where no board catches the gate: on QEMU or
 * hardware. Say so and leave through semihosting (success for the hand-over, failure else).
 */
static void __attribute__((noreturn))
svc_without_board(struct trapframe *tf)
{
	u32 insn = *(const u32 *)tf->tf_pc;
	u32 imm = insn & 0x00FFFFFF;

	if (imm == HYPERCALL_IMM) {
		u32 nr = tf->tf_r[7];
		printf("hypercall %u (%s): no Python kernel behind the gate; stopping\n",
		    nr, hypercall_name(nr));
		semihost_exit(nr == HC_HANDOVER ? ADP_Stopped_ApplicationExit :
		    ADP_Stopped_RunTimeErrorUnknown);
	}
	printf("Fatal kernel mode svc #0x%x at 0x%08x\n", imm, tf->tf_pc);
	semihost_exit(ADP_Stopped_RunTimeErrorUnknown);
}

static struct fatal_report report;

void
trap_fatal(struct trapframe *tf, u32 kind)
{
	u32 fsr = 0, far = 0;
	const char *mode = (tf->tf_spsr & 0x1F) == 0x10 ? "user" : "kernel";

	switch (kind) {
	case 1:
		fsr = cp15_dfsr_get();
		far = cp15_dfar_get();
		printf("Fatal %s mode data abort: '%s' on %s\n", mode,
		    aborts[fsr_index(fsr)], (fsr & FSR_WNR) ? "write" : "read");
		printf("trapframe: %p\nFSR=%08x, FAR=%08x, spsr=%08x\n",
		    (u32)tf, fsr, far, tf->tf_spsr);
		break;
	case 2:
		fsr = cp15_ifsr_get();
		far = cp15_ifar_get();
		printf("Fatal %s mode prefetch abort at 0x%08x\n", mode, tf->tf_pc);
		printf("trapframe: %p, spsr=%08x\n", (u32)tf, tf->tf_spsr);
		printf("IFSR=%08x ('%s'), IFAR=%08x\n", fsr, aborts[fsr_index(fsr)], far);
		break;
	case 3:
		printf("Fatal %s mode undefined instruction %08x at 0x%08x\n", mode,
		    *(const u32 *)tf->tf_pc, tf->tf_pc);
		printf("trapframe: %p, spsr=%08x\n", (u32)tf, tf->tf_spsr);
		break;
	case 4:
		svc_without_board(tf);
	default:
		printf("Fatal %s mode exception (vector %u) at 0x%08x\n", mode, kind, tf->tf_pc);
		break;
	}
	print_registers(tf);
	report.kind = kind;
	report.fsr = fsr;
	report.far = far;
	report.tf = (u32)tf;
	hypercall(HC_FATAL, (u32)&report);
	panic("Fatal abort");
}
