import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { Agent } from 'undici';

/**
 * Which addresses a webhook may reach. A tenant owner chooses the URL, but idsync POSTs from inside the
 * operator's network: without this, an owner could aim webhooks at loopback, RFC 1918 ranges or the
 * cloud metadata address (169.254.169.254) and read the deliveries list as a port scanner. Only public
 * unicast addresses pass (ipaddr.js names the ranges: loopback, private, uniqueLocal fc00::/7,
 * linkLocal 169.254/16 and fe80::/10, carrierGradeNat, unspecified, multicast, reserved…); an IPv4
 * address mapped into IPv6 is judged as the IPv4 one. An operator whose receivers live on the private
 * network sets WEBHOOK_ALLOW_PRIVATE_NETWORKS=true.
 */
export function refusedAddressRange(address: string): string | undefined {
  if (!ipaddr.isValid(address)) return 'not an IP address';
  let parsed = ipaddr.parse(address);
  if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) {
    parsed = (parsed as ipaddr.IPv6).toIPv4Address();
  }
  const range = parsed.range();
  return range === 'unicast' ? undefined : range;
}

/** The URL's host when it is an IP literal (brackets of an IPv6 literal removed), else undefined. */
export function literalAddress(url: string): string | undefined {
  const host = new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
  return isIP(host) ? host : undefined;
}

/** Why a URL is refused at `webhook add` time: its literal host is not a public address. */
export function refusedLiteralHost(url: string): string | undefined {
  const address = literalAddress(url);
  const range = address === undefined ? undefined : refusedAddressRange(address);
  return range === undefined
    ? undefined
    : `url points at a ${range} address; webhooks go to public receivers unless the operator sets WEBHOOK_ALLOW_PRIVATE_NETWORKS=true`;
}

/** Thrown (as the connection's cause) when a receiver's host resolves to a refused address. */
export class RefusedAddressError extends Error {
  readonly code = 'EIDSYNC_REFUSED_ADDRESS';
  constructor(readonly range: string) {
    super(`the receiver's host resolves to a ${range} address`);
    this.name = 'RefusedAddressError';
  }
}

type LookupCallback = (
  error: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/**
 * An undici dispatcher whose every connection resolves the host itself, refuses it when any of its
 * addresses is in a refused range, and hands the socket exactly the addresses it checked: the check
 * and the connection use one answer, so a DNS rebinding between them cannot slip through. (An IP
 * literal is never looked up by the socket; the caller checks it with `literalAddress` first.)
 */
export function guardedDispatcher(): Agent {
  const lookup = (
    hostname: string,
    options: { all?: boolean; family?: number },
    callback: LookupCallback,
  ) => {
    dnsLookup(hostname, { all: true, family: options.family ?? 0 }, (error, addresses) => {
      if (error) return callback(error, []);
      for (const { address } of addresses) {
        const range = refusedAddressRange(address);
        if (range !== undefined) return callback(new RefusedAddressError(range), []);
      }
      if (options.all) return callback(null, addresses);
      const [first] = addresses;
      return callback(null, first!.address, first!.family);
    });
  };
  return new Agent({ connect: { lookup: lookup as never } });
}
