import { UdpTransport } from "../../transports/udp.ts";
import { runTransportContract } from "./_contract.ts";

runTransportContract({ name: "UdpTransport", protocol: "udp", create: (o) => new UdpTransport(o) });
