"""Examples for ``help COMMAND`` and ``COMMAND --help``, drawn from the field notes' cases."""

from __future__ import annotations

EXAMPLES: dict[str, list[str]] = {
    "lab": [
        "lab up overlay-static            # the notes' two-host overlay: vm33 cannot ping vm3",
        "lab status                       # reachability matrix from real pings",
        "lab check                        # solved yet?",
    ],
    "trace": [
        "trace vm33 vm3                   # why can't vm33 ping vm3?",
        "trace vm3 vm33 --size 1422       # a full-size packet, DF set (MTU problems)",
        "trace client host1:8081          # through the DNAT of a published port",
        "trace vm33 vm3 --live            # and check each step with a real probe",
    ],
    "doctor": ["doctor                           # every host, findings most likely first"],
    "capture": [
        "capture eth0@vm33 vxlan1@prod@yy3 eth0@host@yy3 -w ping.pcapng icmp or udp port 4789",
        "capture eth0@host@yy3 -c 10 udp port 4789   # one line per packet, VXLAN decoded",
        "capture eth0@host@yy2 --host yy2 -w yy2.pcapng  # the machine's agent captures and streams",
    ],
    "network": [
        "network create -d overlay prod --subnet 172.21.0.0/16 --gateway 172.21.255.254 --vni 256 --static",
        "network create mybr0 --subnet 192.168.100.0/24 -o bridge_name=docker1 --host host1",
        "network create -d macvlan v10 --subnet 192.168.10.0/24 -o parent=eth0.10 --host host1",
        "network connect net192 a         # a second interface: the user bridges' isolation is crossed",
        "network repair prod              # make the kernel match the store",
    ],
    "container": [
        "container run vm3 --host yy2 --net prod --ip 172.21.0.1",
        "container run joined --host host1 --network-mode container:c1",
    ],
    "fdb": [
        "fdb add 02:42:ac:15:00:01 --network prod dst 10.193.6.36 --host yy3   # bridge fdb add … dev vxlan1 dst …",
        "fdb sync prod --dry-run          # every entry every host needs, as commands",
    ],
    "arp": ["arp add 172.21.0.1 02:42:ac:15:00:01 --container vm33     # arp -s in the container"],
    "host": [
        "host add yy2 --netns lab-yy2 --vtep 10.193.6.36",
        "host set yy3 udp.4789=accept     # remove an INPUT rule dropping VXLAN",
        "host set node2 ip_forward=1",
    ],
    "firewall": [
        "firewall delete inet firewalld filter_INPUT handle 12 --host yy3   # nft delete rule … handle 12",
        "firewall policy inet fw forward accept --host node2",
    ],
    "port": ["port add web1 8081:80          # docker run -p 8081:80: DNAT, MASQUERADE, ACCEPT"],
    "snapshot": [
        "snapshot --netns 'overlay-static.*'",
        "snapshot --watch --every 2 -w /var/tmp/snaps   # a dated file each time something changed",
    ],
    "graph": [
        "graph --format svg -o lab.svg      # the topology through Graphviz's dot",
        "graph --format mermaid --trace vm33 vm3   # for a wiki: the path green, the stop red",
    ],
    "diff": [
        "diff before.json                 # this machine now against a saved snapshot",
        "diff before.json after.json --json",
        "-H yy3 diff yy3-before.json      # a machine over SSH against its own earlier file",
    ],
    "ping": ["ping vm33 vm3 -c 3"],
    "show": ["show fdb dev vxlan1", "show neigh 172.21.", "show bridges", "show firewall"],
    "use": ["use yy3                          # later commands act on host yy3", "use lab overlay-static"],
}


def epilog(command: str) -> str | None:
    lines = EXAMPLES.get(command)
    return "examples:\n" + "\n".join(f"  {line}" for line in lines) if lines else None
