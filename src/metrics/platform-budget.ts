/*
 * The request budget each platform account reported last (RateLimit-Remaining), kept in this process
 * by an internal key (the account, never a label), and exported as the lowest per platform: the account
 * closest to running dry is the one that will make jobs wait.
 */
const lastReported = new Map<string, { platform: string; remaining: number }>();

export function noteBudgetRemaining(platform: string, accountKey: string, remaining: number): void {
  lastReported.set(`${platform}\u0000${accountKey}`, { platform, remaining });
}

/** The lowest budget last reported per platform. */
export function lowestBudgets(): Map<string, number> {
  const lowest = new Map<string, number>();
  for (const { platform, remaining } of lastReported.values())
    lowest.set(platform, Math.min(remaining, lowest.get(platform) ?? Number.POSITIVE_INFINITY));
  return lowest;
}
