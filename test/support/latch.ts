/** A promise a test opens by hand: what a test waits on instead of a sleep (Node 20 lacks Promise.withResolvers). */
export function latch(): { opened: Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}
