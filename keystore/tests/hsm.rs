//! The PKCS#11 key store against SoftHSM2, with tokens made for this test binary.
//!
//! SoftHSM reads its configuration once per process, when the module is initialised, so
//! every token is made before the first store opens the module.

#![allow(unsafe_code)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine;
use common::{BoxError, error_message, tool};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as Pkcs11Error, RvError};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use vault_api::unseal::HsmKeyStore;
use vault_keystore::{KeyStore, MemoryKeyStore, Pkcs11KeyStore, Secret};

const PIN: &str = "4711";
const TOKENS: [&str; 3] = ["on-device", "encrypting", "wrong-pin"];

/// The module's path, once the tokens exist and `SOFTHSM2_CONF` points at them.
fn softhsm() -> Result<PathBuf, String> {
    static MODULE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    MODULE
        .get_or_init(|| make_tokens().map_err(|error| error.to_string()))
        .clone()
}

fn make_tokens() -> Result<PathBuf, BoxError> {
    let module = tool("softhsm")?;
    let folder = tempfile::Builder::new()
        .prefix("softhsm")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))?
        .keep();
    let tokens = folder.join("tokens");
    std::fs::create_dir_all(&tokens)?;
    let config = folder.join("softhsm2.conf");
    std::fs::write(
        &config,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )?;
    for label in TOKENS {
        let made = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &config)
            .args(["--init-token", "--free", "--label", label])
            .args(["--pin", PIN, "--so-pin", "123456"])
            .output()?;
        if !made.status.success() {
            return Err(format!("softhsm2-util: {}", String::from_utf8_lossy(&made.stderr)).into());
        }
    }
    // SAFETY: set once, before any test opens the module (each first calls `softhsm`), and
    // SoftHSM, the only C code here that reads the environment, reads it when opened.
    unsafe { std::env::set_var("SOFTHSM2_CONF", &config) };

    // Initialised here, once, for the helpers below: SoftHSM loses its sessions when two
    // threads initialise it at once. The store guards its own calls the same way.
    std::mem::forget(initialised(&module)?);
    Ok(module)
}

fn initialised(module: &std::path::Path) -> Result<Pkcs11, BoxError> {
    let pkcs11 = Pkcs11::new(module)?;
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(Pkcs11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(pkcs11),
        Err(error) => Err(error.into()),
    }
}

fn spec(token: &str) -> Result<HsmKeyStore, String> {
    Ok(HsmKeyStore {
        module_path: Some(softhsm()?.display().to_string()),
        token_label: Some(token.to_string()),
        pin: Some(PIN.to_string()),
        key_label: Some("vault-unseal".to_string()),
        ..HsmKeyStore::default()
    })
}

/// The module, opened past the store, and the slot of `token`.
fn open(token: &str) -> Result<(Pkcs11, Slot), BoxError> {
    let pkcs11 = initialised(&softhsm()?)?;
    let slot = pkcs11
        .get_slots_with_token()?
        .into_iter()
        .find(|slot| {
            pkcs11
                .get_token_info(*slot)
                .is_ok_and(|info| info.label() == token)
        })
        .ok_or("no such token")?;
    Ok((pkcs11, slot))
}

/// The raw bytes of the data object labelled `label`, read past the store.
fn data_object(token: &str, label: &str) -> Result<Vec<u8>, BoxError> {
    let (pkcs11, slot) = open(token)?;
    let session = pkcs11.open_ro_session(slot)?;
    match session.login(UserType::User, Some(&AuthPin::new(PIN.into()))) {
        Ok(()) | Err(Pkcs11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(error) => return Err(error.into()),
    }
    let template = [
        Attribute::Class(ObjectClass::DATA),
        Attribute::Label(label.into()),
    ];
    let object = *session
        .find_objects(&template)?
        .first()
        .ok_or("no object")?;
    let value = session.get_attributes(object, &[AttributeType::Value])?;
    match value.into_iter().next() {
        Some(Attribute::Value(bytes)) => Ok(bytes),
        _ => Err("no value".into()),
    }
}

#[tokio::test]
async fn keys_on_the_device() -> Result<(), BoxError> {
    let store = Pkcs11KeyStore::from_spec(&spec("on-device")?).await?;
    assert_eq!(store.get("vault-unseal-0").await?, None);

    store
        .set("vault-unseal-0", &Secret::from("first-share"))
        .await?;
    store
        .set("vault-unseal-0", &Secret::from("second-share"))
        .await?;
    store.set("vault-root", &Secret::from("root-token")).await?;
    assert_eq!(
        store.get("vault-unseal-0").await?,
        Some(Secret::from("second-share"))
    );
    assert_eq!(store.list().await?, ["vault-root", "vault-unseal-0"]);

    // As Bank-Vaults keeps them: the object holds RSA ciphertext, not the value.
    let stored = data_object("on-device", "vault-unseal-0")?;
    assert_eq!(stored.len(), 256, "one 2048-bit RSA block");
    assert!(!String::from_utf8_lossy(&stored).contains("second-share"));

    // A store opened afterwards finds the key pair and the values on the token.
    let again = Pkcs11KeyStore::from_spec(&spec("on-device")?).await?;
    assert_eq!(
        again.get("vault-root").await?,
        Some(Secret::from("root-token"))
    );
    Ok(())
}

#[tokio::test]
async fn values_encrypted_into_another_store() -> Result<(), BoxError> {
    // The token chosen by its slot this time.
    let (_, slot) = open("encrypting")?;
    let by_slot = HsmKeyStore {
        token_label: None,
        slot_id: Some(i64::try_from(slot.id())?),
        ..spec("encrypting")?
    };
    let memory = MemoryKeyStore::default();
    let store = Pkcs11KeyStore::encrypting(&by_slot, Box::new(memory.clone())).await?;
    let value = Secret::from("unseal-share");
    store.set("vault-unseal-1", &value).await?;
    assert_eq!(store.get("vault-unseal-1").await?, Some(value.clone()));
    assert_eq!(store.list().await?, ["vault-unseal-1"]);
    assert_eq!(store.get("vault-unseal-2").await?, None);

    let kept = memory.get("vault-unseal-1").await?.ok_or("nothing kept")?;
    assert_ne!(kept, value);
    assert!(!kept.expose().contains("unseal-share"));
    assert!(
        store
            .describe()
            .starts_with("memory encrypted by HSM token \"encrypting\"")
    );

    // Into a store of bytes (a Kubernetes Secret): the raw ciphertext, as Bank-Vaults
    // keeps it, so either operator reads what the other wrote.
    let raw = RawStore::default();
    let store = Pkcs11KeyStore::encrypting(&by_slot, Box::new(raw.clone())).await?;
    store.set("vault-unseal-0", &value).await?;
    let ciphertext = raw.bytes("vault-unseal-0").ok_or("nothing kept")?;
    assert_eq!(ciphertext.len(), 256, "a 2048-bit RSA block");
    assert_eq!(store.get("vault-unseal-0").await?, Some(value.clone()));

    // What earlier versions of this operator kept there: the ciphertext's base64 text.
    let text = base64::engine::general_purpose::STANDARD.encode(&ciphertext);
    raw.set_bytes("vault-unseal-0", text.as_bytes()).await?;
    assert_eq!(store.get("vault-unseal-0").await?, Some(value));
    Ok(())
}

/// A store of bytes, as a Kubernetes Secret is.
#[derive(Clone, Default)]
struct RawStore {
    values: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, Vec<u8>>>>,
}

impl RawStore {
    fn bytes(&self, key: &str) -> Option<Vec<u8>> {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values.get(key).cloned()
    }
}

#[async_trait::async_trait]
impl KeyStore for RawStore {
    fn describe(&self) -> String {
        "bytes".to_string()
    }

    async fn get(&self, key: &str) -> Result<Option<Secret>, vault_keystore::KeyStoreError> {
        Ok(self.bytes(key).and_then(Secret::from_bytes))
    }

    async fn set(&self, key: &str, value: &Secret) -> Result<(), vault_keystore::KeyStoreError> {
        self.set_bytes(key, value.expose().as_bytes()).await
    }

    async fn list(&self) -> Result<Vec<String>, vault_keystore::KeyStoreError> {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        Ok(values.keys().cloned().collect())
    }

    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, vault_keystore::KeyStoreError> {
        Ok(self.bytes(key))
    }

    async fn set_bytes(
        &self,
        key: &str,
        bytes: &[u8],
    ) -> Result<(), vault_keystore::KeyStoreError> {
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values.insert(key.to_string(), bytes.to_vec());
        Ok(())
    }
}

#[tokio::test]
async fn a_wrong_pin_is_refused_without_showing_it() -> Result<(), BoxError> {
    let wrong = HsmKeyStore {
        pin: Some("98765".to_string()),
        ..spec("wrong-pin")?
    };
    let opened = Pkcs11KeyStore::from_spec(&wrong).await;
    let message = error_message(opened);
    assert!(message.starts_with("logging in"), "{message}");
    assert!(message.contains("PIN is incorrect"), "{message}");
    assert!(!message.contains("98765"), "{message}");

    let missing = HsmKeyStore {
        token_label: Some("no-such-token".to_string()),
        ..spec("wrong-pin")?
    };
    let opened = Pkcs11KeyStore::from_spec(&missing).await;
    let message = error_message(opened);
    assert!(
        message.contains("no token labelled \"no-such-token\""),
        "{message}"
    );
    Ok(())
}
