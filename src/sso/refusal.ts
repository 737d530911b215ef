/** Why a sign-in was refused: logged for the operator; the browser sees only a reference. */
export class SamlRefusal extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'SamlRefusal';
  }
}
