"""The command language, once, for bash (``vxray …``) and for the shell.

Modelled on ``docker network …``, ``ip …`` and ``bridge …``. The parser raises
``UsageError`` instead of exiting, so the shell can report a bad line and go on.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from backend.errors import VxrayError
from tui.examples import epilog


class UsageError(VxrayError):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("vxray").strip()  # the caller prints "vxray: " already
        raise UsageError(f"{command}: {message}" if command else message)


def _group(sub: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """A command with actions (``network create``, ``lab up`` …)."""
    return sub.add_parser(name, help=help).add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=Parser
    )


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _scope(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scope (which namespaces belong to the host)")
    g.add_argument("--host-netns", metavar="NAME", help="treat this named netns (or path) as the host's own")
    g.add_argument("--netns", metavar="NAME", action="append", default=[],
                   help="only this namespace (name, glob or path); repeatable")  # fmt: skip
    g.add_argument("--netns-dir", metavar="DIR", action="append", default=[],
                   help="only the namespaces bind-mounted in DIR (e.g. /run/docker/netns); repeatable")  # fmt: skip
    p.add_argument("--docker", metavar="URL", help="Docker Engine to label containers from "
                   "(default: $DOCKER_HOST or /var/run/docker.sock; 'none' to skip)")  # fmt: skip


def _network(sub: argparse._SubParsersAction) -> None:
    net = _group(sub, "network", help="create, list, inspect, remove, connect networks")
    c = net.add_parser("create", help="a bridge, overlay or macvlan network")
    c.add_argument("name")
    c.add_argument("-d", "--driver", default="bridge", help="bridge (default), overlay or macvlan")
    c.add_argument("--subnet", required=True, metavar="CIDR", action="append",
                   help="one IPv4 subnet; repeat with IPv6 subnets for a dual-stack network")  # fmt: skip
    c.add_argument("--gateway", metavar="IP", action="append",
                   help="per subnet (repeatable); default: each subnet's first address")  # fmt: skip
    c.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="bridge_name=NAME (bridge); parent=DEV[.VLAN], macvlan_mode=MODE (macvlan)")  # fmt: skip
    c.add_argument("--vni", metavar="N", help="overlay VNI (default: the lowest free from 256)")
    c.add_argument("--mtu", metavar="N", help="default 1450 for overlays, 1500 otherwise")
    mode = c.add_mutually_exclusive_group()
    mode.add_argument("--learning", action="store_true", help="overlay: learn remote MACs, flood to every VTEP")
    mode.add_argument("--static", action="store_true", help="overlay: no learning; entries by fdb add/sync (default)")
    c.add_argument("--internal", action="store_true", help="bridge: no NAT egress, no traffic off the bridge")
    c.add_argument("--host", help="host of a bridge or macvlan network")
    _json(c)
    _json(net.add_parser("ls", help="every network in the store"))
    i = net.add_parser("inspect", help="a network with its endpoints per host (JSON)")
    i.add_argument("name")
    _json(i)
    r = net.add_parser("rm", help="remove a network (refuses while it has endpoints)")
    r.add_argument("name")
    r.add_argument("--force", action="store_true", help="disconnect its endpoints first")
    _json(r)
    rp = net.add_parser("repair", help="make the kernel match the store: VXLAN VNI, MTUs, FDB/ARP entries")
    rp.add_argument("name")
    rp.add_argument("--host", help="only this host")
    _json(rp)
    for verb, text in (("connect", "give a container an interface on a network"), ("disconnect", "take it away")):
        p = net.add_parser(verb, help=text)
        p.add_argument("network")
        p.add_argument("container")
        if verb == "connect":
            p.add_argument("--ip", metavar="IP")
            p.add_argument("--ip6", metavar="IP6", help="dual-stack networks: default the first free")
            p.add_argument("--mac", metavar="MAC")
        _json(p)


def _container(sub: argparse._SubParsersAction) -> None:
    ctr = _group(sub, "container", help="lab containers: network namespaces, no image")
    r = ctr.add_parser("run", help="create a container (a namespace) on a host")
    r.add_argument("name")
    r.add_argument("--host")
    r.add_argument("--net", metavar="NETWORK")
    r.add_argument("--ip", metavar="IP")
    r.add_argument("--ip6", metavar="IP6", help="dual-stack networks: default the first free")
    r.add_argument("--mac", metavar="MAC")
    r.add_argument("--network-mode", default="bridge", metavar="MODE", help="bridge, host, none or container:NAME")
    _json(r)
    for verb, text in (("rm", "remove a container"), ("inspect", "host, namespace, and per network its interface")):
        p = ctr.add_parser(verb, help=text)
        p.add_argument("name")
        _json(p)
    _json(ctr.add_parser("ls", help="every container in the store"))


def _entries(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser(
        "fdb",
        help="static FDB entries: fdb add|del MAC dev DEV dst IP | fdb add MAC --network NET dst IP | fdb sync NET",
        description="fdb add|del MAC dev DEV dst IP [--netns NS] [--host H]\n"
        "fdb add|del MAC --network NET dst IP --host H\nfdb sync NET [--dry-run]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    f.add_argument("action", choices=("add", "del", "sync"))
    f.add_argument("words", nargs="+", metavar="MAC|NET [dev DEV] [dst IP]")
    f.add_argument("--network", metavar="NET", help="the overlay whose sandbox VXLAN device gets the entry")
    f.add_argument("--netns", metavar="NS", help="a container, a namespace of the host, or a netns name")
    f.add_argument("--host")
    f.add_argument("--dry-run", action="store_true", help="sync: print the commands, change nothing")
    _json(f)
    a = sub.add_parser(
        "arp",
        help="static neighbour entries: arp add|del IP MAC [--container C | --netns NS] [dev DEV]",
        description="arp add IP MAC [--container C | --netns NS] [dev DEV] [--host H]\narp del IP [...]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("action", choices=("add", "del"))
    a.add_argument("words", nargs="+", metavar="IP [MAC] [dev DEV]")
    where = a.add_mutually_exclusive_group()
    where.add_argument("--container")
    where.add_argument("--netns", metavar="NS")
    a.add_argument("--host")
    _json(a)


def _hosts_and_ports(sub: argparse._SubParsersAction) -> None:
    hosts = _group(sub, "host", help="the machines the store knows")
    a = hosts.add_parser("add", help="register a host: this machine, or a namespace acting as one")
    a.add_argument("name")
    a.add_argument("--netns", metavar="NS", help="the host is this named network namespace (labs)")
    a.add_argument("--vtep", metavar="IP", help="its underlay address, the VTEP of its overlays")
    _json(a)
    r = hosts.add_parser("rm", help="forget a host")
    r.add_argument("name")
    _json(r)
    _json(hosts.add_parser("ls", help="every host in the store"))
    st = hosts.add_parser(
        "set", help="forwarding and firewall settings overlays depend on",
        description="host set HOST KEY=VALUE...: ip_forward=0|1, rp_filter=0|1|2, forward_policy=ACCEPT|DROP, "
        "udp.PORT=drop|accept (an INPUT rule dropping e.g. VXLAN's 4789), mtu.DEV=N",
    )  # fmt: skip
    st.add_argument("name")
    st.add_argument("settings", nargs="+", metavar="KEY=VALUE")
    _json(st)
    port = _group(sub, "port", help="publish container ports")
    p = port.add_parser("add", help="HOSTPORT:PORT[/tcp|udp], with DNAT and MASQUERADE as Docker writes them")
    p.add_argument("container")
    p.add_argument("mapping", metavar="HOSTPORT:PORT[/PROTO]")
    _json(p)


def _firewall(sub: argparse._SubParsersAction) -> None:
    fw = _group(sub, "firewall", help="native nftables rules and policies that drop what iptables accepts")
    d = fw.add_parser("delete", help="delete one rule: as nft delete rule FAMILY TABLE CHAIN handle N",
                      description="firewall delete FAMILY TABLE CHAIN handle N [--host H] [--netns NS]")  # fmt: skip
    p = fw.add_parser("policy", help="a base chain's policy: as nft chain FAMILY TABLE CHAIN '{ policy accept; }'",
                      description="firewall policy FAMILY TABLE CHAIN accept|drop [--host H] [--netns NS]")  # fmt: skip
    for parser, last in ((d, ("keyword", "handle")), (p, ("verdict",))):
        parser.add_argument("family", help="ip, ip6, inet, arp, bridge or netdev")
        parser.add_argument("table")
        parser.add_argument("chain")
        for name in last:
            parser.add_argument(name, metavar={"keyword": "handle", "handle": "N"}.get(name, "accept|drop"))
        parser.add_argument("--host")
        parser.add_argument("--netns", metavar="NS", help="a container, a namespace of the host, or a netns name")
        _json(parser)


def _lab(sub: argparse._SubParsersAction) -> None:
    lab = _group(sub, "lab", help="multi-host labs built from namespaces on this machine")
    u = lab.add_parser("up", help="build a lab from a built-in scenario or a topology file; it becomes current")
    u.add_argument("source", metavar="NAME|FILE")
    u.add_argument("--name", help="run it under another name (two copies side by side)")
    _json(u)
    d = lab.add_parser("down", help="remove every namespace, link, rule and record of a lab")
    d.add_argument("name")
    _json(d)
    use = lab.add_parser("use", help="make a lab that is up the current one (later commands act on it)")
    use.add_argument("name")
    _json(use)
    ls = lab.add_parser("ls", help="labs that are up, or the built-in scenarios")
    ls.add_argument("--builtin", action="store_true")
    _json(ls)
    for verb, text in (("status", "hosts, networks, containers and a reachability matrix from real pings"),
                       ("check", "exit 0 and 'solved' when the exercise goal holds"),
                       ("export", "the topology file of what is running")):  # fmt: skip
        p = lab.add_parser(verb, help=text)
        p.add_argument("name", nargs="?", help="default: the current lab")
        _json(p)


def _diagnostics(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "trace", help="follow a packet hop by hop through the kernel's tables: where and why it stops, and the fix",
        description="trace SRC DST: SRC a container or namespace; DST a container, an IP or HOST:PORT. "
        "Exit 0 when the packet and its reply would get through, 1 when not.",
    )  # fmt: skip
    t.add_argument("src", metavar="SRC")
    t.add_argument("dst", metavar="DST")
    t.add_argument("--proto", default="icmp", help="icmp (default), tcp or udp")
    t.add_argument("--dport", type=int, metavar="N")
    t.add_argument(
        "--size",
        type=int,
        metavar="BYTES",
        help="payload as ping -s (fragmented where the path is narrower, as ping does)",
    )
    t.add_argument("--df", action="store_true", help="don't fragment, as ping -M do")
    t.add_argument("-6", dest="ip6", action="store_true", help="to DST's IPv6 address (a container's or namespace's), "
                   "as ping -6; an IPv6 DST needs no -6")  # fmt: skip
    t.add_argument("--live", action="store_true", help="also send a real probe and show, per step, whether it "
                   "was seen there")  # fmt: skip
    t.add_argument("-w", "--write", metavar="FILE.pcapng", help="with --live: the probe's frames at every step, "
                   "one interface per device, into one pcapng file")  # fmt: skip
    _json(t)
    cap = sub.add_parser(
        "capture", help="packets from devices of any namespaces and machines, into one pcapng file or one line each",
        description="capture DEV[@NAMESPACE[@HOST]] [DEV@NAMESPACE ...] [FILTER ...]: NAMESPACE a container, a "
        "namespace or `host` (default); the first word is a device, further devices hold '@'; the other words (or "
        "those after --) are a tcpdump filter. Ctrl-C ends it with the file whole.",
    )  # fmt: skip
    cap.add_argument("words", nargs="+", metavar="DEV[@NS]|FILTER")
    cap.add_argument("--host", dest="capture_hosts", action="append", default=[], metavar="URL|NAME",
                     help="a machine whose agent captures (as the global -H); repeatable")  # fmt: skip
    cap.add_argument("-w", "--write", metavar="FILE.pcapng", help="write the frames to a pcapng file, one "
                     "interface per device (dev@namespace@host)")  # fmt: skip
    cap.add_argument("-c", "--count", type=int, metavar="N", help="stop after N packets")
    cap.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds")
    cap.add_argument("--snaplen", type=int, metavar="BYTES", help="bytes kept of each frame (default 262144)")
    sh = sub.add_parser(
        "shell", help="interactive shell: completion from live state, history, help; or a script",
        description="shell [FILE] [-c 'cmd; cmd']: without FILE or -c, and with a terminal, interactive; "
        "otherwise the lines run in order and the first failing one stops the script",
    )  # fmt: skip
    sh.add_argument("file", nargs="?", metavar="FILE")
    sh.add_argument("-c", dest="command_string", metavar="COMMANDS", help="commands separated by ';'")
    sh.add_argument("--keep-going", action="store_true", help="run every line even after one fails")
    sh.add_argument("--yes", action="store_true", help="do not ask before destructive commands")
    png = sub.add_parser("ping", help="ping from a container (or namespace) to a container or IP",
                         description="ping SRC DST [-c N]: runs ping in SRC's namespace; Ctrl-C stops it")  # fmt: skip
    png.add_argument("src", metavar="SRC")
    png.add_argument("dst", metavar="DST")
    png.add_argument("-c", "--count", type=int, default=3, metavar="N")
    d = sub.add_parser("doctor", help="check every host against the store: findings, most likely first, with fixes",
                       description="Exit 0 when nothing likely to break traffic is found, 1 otherwise.")  # fmt: skip
    _json(d)
    _evidence(sub)


def _evidence(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("graph", help="the topology as Graphviz DOT, Mermaid, JSON or SVG (a trace's path marked)",
                       description="graph [--format dot|mermaid|json|svg] [--trace SRC DST] [-o FILE]: hosts, "
                       "namespaces, bridges and ports, veth pairs, VXLAN devices and the tunnels their FDB programs, "
                       "the underlay and routers; svg through Graphviz's dot")  # fmt: skip
    g.add_argument("--format", default="dot", metavar="FORMAT", help="dot (default), mermaid, json or svg")
    g.add_argument("--trace", nargs=2, metavar=("SRC", "DST"), help="mark the path of a trace, its stop in red")
    g.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    df = sub.add_parser("diff", help="what appeared, disappeared or changed between two snapshots, or since one",
                        description="diff OLD [NEW]: snapshot files (`vxray snapshot --json`, a saved view); without "
                        "NEW, OLD against this machine now (with snapshot's scope options), or with --host against "
                        "those machines. Exit 0 when nothing changed, 1 when something did.")  # fmt: skip
    df.add_argument("old", metavar="OLD")
    df.add_argument("new", nargs="?", metavar="NEW")
    _json(df)
    _scope(df)


def parser() -> Parser:
    p = Parser(prog="vxray", description="See and fix container networking on Linux hosts.")
    p.add_argument("--store", metavar="URL", help="cluster store: file:///PATH (default $VXRAY_STORE or "
                   "/var/lib/vxray/store.db) or consul://HOST:8500[/prefix]")  # fmt: skip
    p.add_argument("--store-token", metavar="TOKEN", help="consul ACL token (default $CONSUL_HTTP_TOKEN)")
    p.add_argument("-H", "--host", dest="remotes", action="append", default=[], metavar="URL|NAME",
                   help="a machine to act on: ssh://[user@]host[:port], file://SNAPSHOT.json, NAME=URL, a name saved "
                   "with `vxray hosts add`, or 'all' (the saved and discovered ones); repeatable")  # fmt: skip
    p.add_argument("--on", metavar="NAME", help="with several --host: the one a state-changing command runs on")
    p.add_argument("--read-only", action="store_true", help="refuse every command that changes state, on every host")
    p.add_argument("--journal", metavar="TOKEN", help=argparse.SUPPRESS)  # an agent's operation: outcome recorded
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)  # none: the app

    snap = sub.add_parser("snapshot", help="every namespace, link, FDB, neighbour, route and NAT rule of a host")
    snap.add_argument("--json", action="store_true", help="print the snapshot as JSON (loadable with --load)")
    snap.add_argument("--load", metavar="FILE", help="read a saved JSON snapshot instead of the kernel")
    snap.add_argument("--limit", type=int, default=25, metavar="N", help="rows per table in the summary (0: all)")
    snap.add_argument("--all", action="store_true", help="also show kernel-made multicast FDB/neighbour/route entries")
    snap.add_argument("--watch", action="store_true", help="keep a dated snapshot file in -w DIR each time the state "
                      "changed (counters alone do not count), until Ctrl-C; `vxray diff` compares two")  # fmt: skip
    snap.add_argument("--every", type=float, default=5.0, metavar="S", help="--watch: seconds between reads (5)")
    snap.add_argument("-w", dest="write_dir", default=".", metavar="DIR", help="--watch: where the files go (.)")
    _scope(snap)

    demo = sub.add_parser("demo", help="build the field notes' two-host overlay in namespaces and show it")
    demo.add_argument("action", nargs="?", choices=("up", "down"), default="up")
    demo.add_argument("--docker", action="store_true", help="the same overlay on two real Docker Engines in a swarm "
                      "(lab docker-swarm)")  # fmt: skip

    app = sub.add_parser("app", help="the live view of every host, with the command line, trace and doctor inside "
                         "(what `vxray` alone opens)")  # fmt: skip
    app.add_argument("--load", metavar="FILE", help="show a saved view (see screenshots/make.py) instead of the kernel")
    agent = sub.add_parser("agent", help="speak vxray's protocol on stdin/stdout (what `--host ssh://…` starts "
                           "over SSH; no daemon, no port)")  # fmt: skip
    agent.add_argument("--stdio", action="store_true", required=True, help="the protocol on stdin/stdout")
    agent.add_argument("--name", help="the name it registers under (default: the machine's hostname)")
    _scope(agent)
    inv = _group(sub, "hosts", help="the machines saved for --host (inventory), and those the store discovered")
    a = inv.add_parser("add", help="save a machine under a name: ssh://[user@]host[:port] or file://PATH")
    a.add_argument("name")
    a.add_argument("url")
    _json(a)
    r = inv.add_parser("rm", help="forget a saved machine")
    r.add_argument("name")
    _json(r)
    _json(inv.add_parser("ls", help="saved machines, and agents registered in the inventory's consul store"))
    _lab(sub)
    _diagnostics(sub)
    _network(sub)
    _container(sub)
    _entries(sub)
    _hosts_and_ports(sub)
    _firewall(sub)
    for name, command in sub.choices.items():
        command.epilog = epilog(name)
        command.formatter_class = argparse.RawDescriptionHelpFormatter
    return p


def keywords(words: list[str], allowed: tuple[str, ...], positional: int) -> tuple[list[str], dict[str, str]]:
    """Split ``MAC dev vxlan1 dst 10.0.0.1`` into positionals and iproute2-style keyword pairs."""
    pos: list[str] = []
    kw: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word in allowed:
            if i + 1 >= len(words):
                raise UsageError(f"{word} needs a value")
            kw[word] = words[i + 1]
            i += 2
        elif len(pos) < positional:
            pos.append(word)
            i += 1
        else:
            raise UsageError(f"unexpected {word!r}")
    return pos, kw
