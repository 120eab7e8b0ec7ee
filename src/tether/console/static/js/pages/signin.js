import { signIn } from "../api.js";
import { field, h, replace } from "../dom.js";

export function render(main, { onSignedIn }) {
  const login = h("input", { name: "login", autocomplete: "username", required: true, autofocus: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const error = h("p", { class: "alert", role: "alert" });
  const button = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h("form", { class: "signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in to Tether"),
    field("Login", login), field("Password", password), error, button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    button.disabled = true;
    try {
      await signIn(login.value.trim(), password.value);
      onSignedIn();
    } catch (failure) {
      error.textContent = failure.status === 401 || failure.status === 403
        ? `Sign-in refused: ${failure.message}` : `Cannot sign in: ${failure.message}`;
      button.disabled = false;
      password.focus();
    }
  });
  replace(main, form);
  login.focus();
  return null;
}
