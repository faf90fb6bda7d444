"""Writes the line tables of a few code objects, with the line of every instruction offset as
this interpreter's own PyCode_Addr2Line gives it, as JSON lines on stdout.

    for p in python3.8 python3.9 ... python3.15; do $p linetables.py; done > linetables.json

The unit test in lines.rs decodes each table and must find the same lines. The code below is
only material: it is compiled, never run.
"""

import ctypes
import json
import sys

SAMPLE = '''
def plain(a, b):
    x = a + b
    y = x * 2
    return y

def loop(items):
    total = 0
    for item in items:
        if item % 2:
            total += item
        else:
            total -= item
    while total > 100:
        total //= 2
    return total

def handler():
    try:
        risky()
    except (KeyError, ValueError) as e:
        log(e)
    finally:
        cleanup()

def gen(n):
    for i in range(n):
        yield i
    yield from range(3)

def comprehensions(data):
    squares = [x * x for x in data if x]
    lookup = {k: v for k, v in zip(data, squares)}
    return sum(v for v in lookup.values())

class Widget:
    def method(self, value):
        with open(value) as f:
            return f.read()

async def coro(session):
    async with session.get("x") as r:
        return await r.text()

def far_jumps(flag):
    if flag:
''' + "        pass\n" * 300 + '''
    return flag

def long_expression(a):
    return (a +
            1 +

            2 +
            3)
''' + "\n" * 200 + '''
def after_a_gap():
    return 1
'''


def code_objects(code):
    yield code
    for const in code.co_consts:
        if isinstance(const, type(code)):
            yield from code_objects(const)


def main():
    addr2line = ctypes.pythonapi.PyCode_Addr2Line
    addr2line.restype = ctypes.c_int
    addr2line.argtypes = [ctypes.py_object, ctypes.c_int]
    version = sys.version.split()[0]
    for code in code_objects(compile(SAMPLE, "sample.py", "exec")):
        table = code.co_lnotab if sys.version_info < (3, 10) else code.co_linetable
        lines = [[offset, addr2line(code, offset)] for offset in range(0, len(code.co_code), 2)]
        print(json.dumps({
            "version": version,
            "name": code.co_name,
            "first_line": code.co_firstlineno,
            "table": table.hex(),
            "lines": [[o, None if l == -1 else l] for o, l in lines],
        }, separators=(",", ":")))


main()
