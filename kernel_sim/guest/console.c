/*
 * The early console: a polled PL011 driver and a small printf, enough for locore, initarm,
 * pmap_bootstrap and the fatal-trap reports (FreeBSD's uart_pl011 in polled mode).
 */
#include <stdarg.h>
#include "armboard.h"

#define UART_DR		0x00
#define UART_FR		0x18
#define UART_FR_TXFF	(1u << 5)	/* transmit FIFO full */

static volatile u32 *uart_base;

void
cons_init(u32 uart_va)
{
	uart_base = (volatile u32 *)uart_va;
}

void
cons_putc(int c)
{
	if (uart_base == 0)
		return;
	if (c == '\n')
		cons_putc('\r');
	while (uart_base[UART_FR / 4] & UART_FR_TXFF)
		;
	uart_base[UART_DR / 4] = (u32)(unsigned char)c;
}

struct sink {
	char *buf;		/* NULL: the console */
	u32 size;
	u32 len;
};

static void
sink_put(struct sink *s, char c)
{
	if (s->buf == 0) {
		cons_putc(c);
	} else if (s->len + 1 < s->size) {
		s->buf[s->len] = c;
	}
	s->len++;
}

static void
put_unsigned(struct sink *s, u32 v, u32 base, int width, char pad, int upper)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char tmp[12];
	int n = 0;

	do {
		tmp[n++] = digits[v % base];
		v /= base;
	} while (v != 0);
	while (width-- > n)
		sink_put(s, pad);
	while (n > 0)
		sink_put(s, tmp[--n]);
}

/* %d %u %x %X %p %s %c %%, with a field width, '0' padding and the z/l/j length modifiers. */
static void
kvprintf(struct sink *s, const char *fmt, va_list ap)
{
	for (; *fmt != '\0'; fmt++) {
		if (*fmt != '%') {
			sink_put(s, *fmt);
			continue;
		}
		fmt++;
		char pad = ' ';
		int width = 0;
		if (*fmt == '0') {
			pad = '0';
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'z' || *fmt == 'l' || *fmt == 'j')
			fmt++;
		switch (*fmt) {
		case 'd': {
			int v = va_arg(ap, int);
			if (v < 0) {
				sink_put(s, '-');
				put_unsigned(s, (u32)-v, 10, width - 1, pad, 0);
			} else {
				put_unsigned(s, (u32)v, 10, width, pad, 0);
			}
			break;
		}
		case 'u':
			put_unsigned(s, va_arg(ap, u32), 10, width, pad, 0);
			break;
		case 'x':
		case 'X':
			put_unsigned(s, va_arg(ap, u32), 16, width, pad, *fmt == 'X');
			break;
		case 'p':
			sink_put(s, '0');
			sink_put(s, 'x');
			put_unsigned(s, va_arg(ap, u32), 16, 0, '0', 0);
			break;
		case 's': {
			const char *str = va_arg(ap, const char *);
			if (str == 0)
				str = "(null)";
			int len = 0;
			while (str[len] != '\0')
				len++;
			while (width-- > len)
				sink_put(s, ' ');
			while (*str != '\0')
				sink_put(s, *str++);
			break;
		}
		case 'c':
			sink_put(s, (char)va_arg(ap, int));
			break;
		case '%':
			sink_put(s, '%');
			break;
		default:
			sink_put(s, '%');
			sink_put(s, *fmt);
			break;
		}
	}
}

int
printf(const char *fmt, ...)
{
	struct sink s = { 0, 0, 0 };
	va_list ap;

	va_start(ap, fmt);
	kvprintf(&s, fmt, ap);
	va_end(ap);
	return (int)s.len;
}

int
snprintf(char *buf, u32 size, const char *fmt, ...)
{
	struct sink s = { buf, size, 0 };
	va_list ap;

	va_start(ap, fmt);
	kvprintf(&s, fmt, ap);
	va_end(ap);
	if (size > 0)
		buf[s.len < size ? s.len : size - 1] = '\0';
	return (int)s.len;
}

static char panicstr[256];

/* panic(9): print as FreeBSD does, tell the board, stop. */
void
panic(const char *fmt, ...)
{
	struct sink s = { panicstr, sizeof(panicstr), 0 };
	va_list ap;

	va_start(ap, fmt);
	kvprintf(&s, fmt, ap);
	va_end(ap);
	panicstr[s.len < sizeof(panicstr) ? s.len : sizeof(panicstr) - 1] = '\0';
	printf("panic: %s\ncpuid = 0\n", panicstr);
	hypercall(HC_PANIC, (u32)panicstr);
	halt();
}
