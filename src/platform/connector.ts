import type { Access, Operation } from '../reconcile/model.js';

/**
 * The one interface every platform implements. The reconciler reads a user's actual access through it,
 * and applies one operation at a time; every operation must be idempotent (applying it to a state that
 * already has it answers `already-done`).
 */
export interface PlatformConnector {
  readonly name: string;
  readonly capabilities: ConnectorCapabilities;
  readAccess(account: string): Promise<Access>;
  /** Admin accounts of each named team, to protect a team's last admin. */
  teamAdmins(teams: readonly string[]): Promise<Map<string, Set<string>>>;
  apply(operation: PlatformOperation): Promise<OperationOutcome>;
  /**
   * Applies operations in order and returns one outcome each. A connector may batch consecutive
   * operations of one kind (the built-in platform removes 100 team memberships in one statement); the
   * outcomes must be exactly what applying them one by one would give.
   */
  applyAll(operations: readonly PlatformOperation[]): Promise<OperationOutcome[]>;
  /** How many members the Enterprise Account has: the base of the mass-change threshold. */
  enterpriseSize(): Promise<number>;
}

export interface ConnectorCapabilities {
  /**
   * Whether the platform lets idsync revoke a removed user's own platform credentials (API keys, CLI
   * sessions). When it cannot, the receipt tells a human what is left to do.
   */
  revokesPlatformCredentials: boolean;
}

/** Tokens are idsync's own; every other operation goes to the platform. */
export type PlatformOperation = Exclude<Operation, { kind: 'revoke-tokens' }>;

export type OperationOutcome =
  | { status: 'applied' }
  | { status: 'already-done' }
  /** The platform refused for a reason a human must resolve (e.g. the last admin of a team). */
  | { status: 'blocked'; reason: string };
